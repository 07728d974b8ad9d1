"""The part every V-Reason model shares: configuration, ``attach``, per-document isolation and records.

:class:`VReasonModel` is a mixin placed *before* an lmms-eval wrapper class in the bases, so that the
upstream ``generate_until`` (prompts, video loading, batching, answer handling) runs unchanged inside an
attached V-Reason session::

    class VReasonQwen2_5_VL(VReasonModel, lmms_eval.models.chat.qwen2_5_vl.Qwen2_5_VL): ...

The upstream ``generate_until`` is called one batch of documents at a time (one document unless
``batch_size`` > 1), so a document that raises (missing / corrupt video, decoding error) fails alone: it is
logged, answered with ``""`` and listed in the summary; the others are scored as usual.
"""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path
from typing import ClassVar

from loguru import logger as eval_logger

from vreason_hooks import Session, VReasonConfig, attach
from vreason_hooks.adapters.registry import adapter_for_config
from vreason_hooks.adapters.spec import AdapterSpec
from vreason_hooks.apps.checkpoints import read_checkpoint_config
from vreason_hooks.apps.outputs import output_folder
from vreason_hooks.errors import NoAdapterError

from .cli_context import rename_pending_task_manager, run_stamp
from .model_args import IntegrationOptions, check_prompt_model, split_model_args
from .records import DocRecord, Records, cli_output_dir, peak_memory


def upstream_arguments(cls) -> dict:
    """``{name: default}`` of the keyword arguments of ``cls.__init__`` (the upstream wrapper's own)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}


def _describe(err: BaseException) -> str:
    """``Type: message``, followed by the errors it was raised while handling (the root cause often hides
    there: qwen-vl-utils retries a failed decord read with another backend and reports that one's error)."""
    parts, seen = [], set()
    while err is not None and id(err) not in seen and len(parts) < 4:
        seen.add(id(err))
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return " <- ".join(parts)


class VReasonModel:
    """Mixin for an lmms-eval model class; see the module docstring.

    Subclasses set :attr:`MODEL_NAME` (the ``--model`` name), :attr:`UPSTREAM` (the wrapper class whose
    arguments they accept) and :attr:`UPSTREAM_NAME` (its ``--model`` name, for task prompts), and implement
    :meth:`_load_upstream`."""

    MODEL_NAME: str = ""
    UPSTREAM: type
    UPSTREAM_NAME: str = ""
    ALIASES: tuple[str, ...] = ()
    """Other ``--model`` names of this class."""
    EXTRA_ARGS: ClassVar[dict[str, object]] = {}
    """Arguments this integration adds to the upstream ones, with their defaults."""
    DOC_BATCHING: bool = True
    """Whether the upstream wrapper batches several documents correctly (else one per call)."""

    vreason: Session
    vreason_config: VReasonConfig
    vreason_summary: dict | None = None

    def __init__(self, **kwargs) -> None:
        upstream_keys = set(upstream_arguments(self.UPSTREAM)) | set(self.EXTRA_ARGS)
        config, options, upstream = split_model_args(self.MODEL_NAME, kwargs, upstream_keys)
        self.vreason_config, self.vreason_options = config, options
        prompt_model = check_prompt_model(self.MODEL_NAME, options.prompt_model, self.UPSTREAM_NAME)
        self.vreason_out_dir = self._output_dir(options)
        if prompt_model != "own":
            rename_pending_task_manager(
                prompt_model,
                own_names=(self.MODEL_NAME, *self.ALIASES),
                baseline=prompt_model == self.UPSTREAM_NAME,
            )
        self._vreason_stamp = run_stamp()
        self.vreason_adapter = self._checkpoint_adapter(upstream)
        self._load_upstream(**upstream)
        self.vreason_records = Records(self.MODEL_NAME, config.model_dump())
        self._attach_vreason()

    def _load_upstream(self, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _output_dir(self, options: IntegrationOptions) -> Path | None:
        """Where :meth:`clean` writes the traces and the summary (``trace_dir=``, else next to lmms-eval's
        samples), created now and proven writable: a folder that cannot be written stops the run before any
        weight loads, not after every document has run. ``None``: nowhere (no ``--output_path``)."""
        if options.trace_dir:
            return output_folder(options.trace_dir, f"{self.MODEL_NAME}: trace_dir=")
        default = cli_output_dir()
        return output_folder(default, f"{self.MODEL_NAME}: --output_path folder") if default else None

    def _checkpoint_adapter(self, upstream: dict) -> AdapterSpec:
        """The adapter for the ``pretrained`` checkpoint, from its config alone, so that a checkpoint of a
        family V-Reason has no adapter for stops the run before its weights are loaded."""
        pretrained = upstream.get("pretrained", upstream_arguments(self.UPSTREAM).get("pretrained"))
        remote = bool(upstream.get("trust_remote_code", False))
        label = f"{self.MODEL_NAME}: pretrained={pretrained}"
        config = read_checkpoint_config(str(pretrained), label, trust_remote_code=remote)
        try:
            return adapter_for_config(config)
        except NoAdapterError as err:
            raise NoAdapterError(
                f"{self.MODEL_NAME}: pretrained={pretrained} is a {config.model_type!r} checkpoint and no "
                f"V-Reason adapter matches it ({err})"
            ) from None

    # ------------------------------------------------------------------ session
    def _attach_vreason(self) -> None:
        model = self.model
        self.vreason = attach(model, self.vreason_config, adapter=self.vreason_adapter)
        inner = model.generate  # the session's wrapper; timed from outside so the time covers it too
        self._generate_s = 0.0

        def timed_generate(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self._generate_s += time.perf_counter() - start

        model.generate = timed_generate  # removed with the session's own wrapper on detach
        eval_logger.info(f"V-Reason attached to {type(model).__name__}: {self.vreason_config.model_dump()}")

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests):
        size = max(1, int(self.batch_size)) if self.DOC_BATCHING else 1
        answers = []
        for start in range(0, len(requests), size):
            answers.extend(self._run(requests[start : start + size]))
        return answers

    def _run(self, group):
        """Answers for ``group`` from the upstream wrapper; on an error, each document alone."""
        seen: list = []
        tracked = [self.tracked_request(r, seen) for r in group] if len(group) > 1 else group
        self.vreason.pop_traces()  # leftovers (of a failed call) belong to no document
        self._generate_s = 0.0
        start = time.perf_counter()
        try:
            answers = super().generate_until(tracked)
            if len(answers) != len(group):
                raise RuntimeError(
                    f"upstream wrapper returned {len(answers)} answers for {len(group)} documents"
                )
        except Exception as err:  # noqa: BLE001 - one bad document must not end the run
            if len(group) > 1:
                return [a for request in group for a in self._run([request])]
            self._record_failure(group[0], err)
            return [""]
        elapsed = time.perf_counter() - start
        traces = self.vreason.pop_traces()  # popped: the session's memory stays flat over a long run
        if len(group) == 1:
            by_doc = {group[0].doc_id: traces[-1] if traces else None}
        elif len(order := self.batch_rows(group, seen)) == len(
            traces
        ):  # rows follow the order messages were built
            by_doc = dict(zip(order, traces))
        else:
            eval_logger.warning(
                "V-Reason: could not match batch rows to documents; traces of this batch dropped"
            )
            by_doc = {}
        for request in group:
            if (request.metadata or {}).get("__padding_only__"):
                continue  # a rank's filler copy of a document it already ran
            trace = by_doc.get(request.doc_id)
            self.vreason_records.add(
                DocRecord(
                    task=request.task_name,
                    doc_id=int(request.doc_id),
                    rank=self.rank,
                    output_tokens=trace.num_tokens if trace is not None else None,
                    time_s=elapsed / len(group),
                    generate_s=self._generate_s,
                    trace=trace.to_dict() if trace is not None else None,
                )
            )
        return answers

    @staticmethod
    def tracked_request(request, seen: list):
        """A copy of a chat request whose ``doc_to_messages`` notes the document it is called with."""
        ctx, doc_to_messages, gen_kwargs, doc_id, task, split = request.arguments

        def noting(doc, *args, **kwargs):
            seen.append(doc)
            return doc_to_messages(doc, *args, **kwargs)

        tracked = copy.copy(request)
        tracked.arguments = (ctx, noting, gen_kwargs, doc_id, task, split)
        return tracked

    def batch_rows(self, group, seen: list) -> list[int]:
        """The doc ids of the batch rows, from the documents the upstream code built messages for, in order.

        Matched by the document, not by whose ``doc_to_messages`` was called: lmms-eval's ``huggingface``
        model calls the first request's for every row. ``[]`` if a document is not one of the group's.
        """
        pending = [(request.doc_id, self._doc(request)) for request in group]
        order = []
        for doc in seen:
            match = next((i for i, (_, candidate) in enumerate(pending) if candidate == doc), None)
            if match is None:
                return []
            order.append(pending.pop(match)[0])
        return order

    def _doc(self, request):
        """The document of a request (lmms-eval's arguments end with ``doc_id, task, split``)."""
        doc_id, task, split = request.arguments[-3:]
        return self.task_dict[task][split][doc_id]

    def _record_failure(self, request, err: Exception) -> None:
        message = _describe(err) + self._videos_note(request)
        eval_logger.error(
            f"V-Reason: document {request.task_name}/{request.doc_id} failed, answered with '' and skipped: "
            f"{message}"
        )
        if not (request.metadata or {}).get("__padding_only__"):
            self.vreason_records.add(
                DocRecord(
                    task=request.task_name,
                    doc_id=int(request.doc_id),
                    rank=self.rank,
                    failed=True,
                    error=message[:2000],
                )
            )

    def _videos_note(self, request) -> str:
        """`` [video /x.mp4 (missing)]`` for the document's video paths, to make the log say which file."""
        try:
            args = request.arguments
            doc = self._doc(request)
            # Simple: (ctx, gen_kwargs, doc_to_visual, ...); chat: (ctx, doc_to_messages, ...), a bound method
            # of the task, which has doc_to_visual.
            doc_to_visual = args[2] if self.is_simple else args[1].__self__.doc_to_visual
            paths = [v for v in doc_to_visual(doc) or [] if isinstance(v, str)]
        except Exception:  # noqa: BLE001 - the note is a courtesy; never let it hide the real error
            return ""
        notes = [f"{p} ({'exists' if Path(p).is_file() else 'missing'})" for p in paths]
        return f" [video: {', '.join(notes)}]" if notes else ""

    # ------------------------------------------------------------------ end of run
    def clean(self):
        """lmms-eval calls this on every rank after the last request, before it scores the answers and
        writes its results: detach, gather, write, summarise. Nothing here may take those results down, so a
        failure is logged, never raised."""
        try:
            self._finish_vreason()
        except Exception as err:  # noqa: BLE001 - lmms-eval's results come after this call
            eval_logger.error(
                f"V-Reason: writing the traces and the summary failed ({_describe(err)}); lmms-eval's "
                "results are not affected"
            )
        return super().clean()

    def _finish_vreason(self) -> None:
        if getattr(self, "vreason", None) is not None and self.vreason.attached:
            self.vreason.detach()
        out_dir = self.vreason_out_dir
        if out_dir is None and self.rank == 0:
            eval_logger.warning(
                "V-Reason: no --output_path and no trace_dir=; per-document traces are not written"
            )
        memory = peak_memory({p.device for p in self.model.parameters()})
        self.vreason_summary = self.vreason_records.finish(out_dir, self._vreason_stamp, self.rank, memory)
