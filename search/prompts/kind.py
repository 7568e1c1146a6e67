"""The ``prompt`` candidate kind: validation of a prompt campaign, its evaluator, seeds, export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators import PromptEvaluator
from search.core import Campaign, InvalidCandidate, KindPlugin, RunStore, db_path, register_kind
from search.llm import LLMConfig, make_llm

from .final import finalize_prompt_run, prompt_final
from .options import ALGORITHM_STRATEGY, PromptOptions, build_task, prompt_options
from .show import prompt_report_sections, prompt_show_lines
from .text import clean_prompt

if TYPE_CHECKING:
    from search.core import Engine


class PromptKind(KindPlugin):
    name = "prompt"
    options_model = PromptOptions
    default_random_ops = {"prompt_edit": 1.0}
    default_llm_ops = {"prompt_rewrite": 1.0}

    def validate(self, campaign: Campaign) -> None:
        super().validate(campaign)
        o: PromptOptions = campaign.options
        build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")  # fail early
        wanted = ALGORITHM_STRATEGY[o.algorithm]
        if "strategy" in campaign.search.model_fields_set and campaign.search.strategy != wanted:
            if campaign.search.strategy in ALGORITHM_STRATEGY.values():
                raise ValueError(f"[prompt] algorithm = {o.algorithm!r} but [search] strategy = "
                                 f"{campaign.search.strategy!r}; give one of them")
        else:
            campaign.search.strategy = wanted
        if campaign.fidelities and "test" in campaign.fidelities:
            raise ValueError("fidelities: 'test' is held out; it is scored after the search for the top "
                             "[prompt] test_top prompts. Use fidelities = [\"minibatch\", \"dev\"]")
        for f in campaign.fidelities or ():
            if f not in ("minibatch", "dev"):
                raise ValueError(f"fidelities: unknown prompt fidelity {f!r}; use minibatch and/or dev")

    def make_evaluator(self, campaign: Campaign, run_dir: Path) -> "PromptEvaluator":
        o = prompt_options(campaign)
        task = build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")
        cfg = LLMConfig.model_validate(o.task_model or {})
        llm = make_llm(cfg, cache_dir=Path(run_dir) / "task_llm_cache")
        llm_id = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str)
        return PromptEvaluator(task, llm, llm_id=llm_id, minibatch_size=o.minibatch, minibatch_seed=o.minibatch_seed,
                               max_prompt_chars=o.max_prompt_chars, system=o.task_system, metric=o.metric,
                               max_tokens=o.max_tokens)

    def seed_texts(self, campaign: Campaign) -> list[tuple[str, str]]:
        o = prompt_options(campaign)
        task = build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")
        return [("initial", task.initial_prompt)] + [(f"seed{i + 1}", s) for i, s in enumerate(o.seed_prompts)]

    def normalize(self, text: str) -> str:
        t = clean_prompt(text) if text.lstrip().lower().startswith("<prompt") else " ".join(text.split())
        if not t:
            raise InvalidCandidate("empty prompt")
        return t

    def describe(self, text: str) -> dict[str, Any]:
        return {"size": len(text.split()), "chars": len(text)}

    def export(self, text: str, out: Path, *, name: str, info: dict[str, Any]) -> None:
        """A ``.json`` path gets the prompt with its scores and task; any other path the plain text."""
        out = Path(out)
        if out.suffix.lower() == ".json":
            data: dict[str, Any] = {"prompt": text, **info}
            run = info.get("run")
            if run:  # add the held-out test results and the task from the run, when there are some
                try:
                    st = RunStore(db_path(run), readonly=True)
                    try:
                        fin = st.get_meta("prompt_final") or {}
                        cand = st.candidate(int(info["candidate"])) if "candidate" in info else None
                    finally:
                        st.close()
                    data["task"] = fin.get("task")
                    data["metric"] = fin.get("metric")
                    data["test_accuracy"] = ((cand or {}).get("meta", {}).get("test") or {}).get("accuracy")
                    data["initial"] = fin.get("initial")
                except Exception as e:  # noqa: BLE001 - the prompt itself is what matters
                    data["note"] = f"run details unavailable: {e}"
            out.write_text(json.dumps(data, indent=2, default=str) + "\n")
        else:
            out.write_text(text.rstrip() + "\n")

    def finalize(self, engine: "Engine") -> dict[str, Any]:
        return finalize_prompt_run(engine)

    def selected_id(self, view: Any) -> int | None:
        """The final prompt: the initial one when the top prompt's dev gain was not significant."""
        return ((prompt_final(view) or {}).get("best") or {}).get("id")

    def show_lines(self, view: Any) -> list[str]:
        """Text lines for ``optforge show``: test accuracy of the best prompt next to the initial one."""
        return prompt_show_lines(view)

    def report_sections(self, view: Any) -> list[str]:
        """HTML for ``optforge report``: test table and best dev score over generations."""
        return prompt_report_sections(view)


register_kind(PromptKind())
