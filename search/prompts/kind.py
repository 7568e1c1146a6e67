"""The ``prompt`` candidate kind: validation of a prompt campaign, its evaluator, seeds, export."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from evaluators import PromptEvaluator
from proxies.prompts import decode_prompt, encode_prompt, sample_demos
from search.core import Campaign, EngineView, InvalidCandidate, KindPlugin, RunStore, RunView, db_path, register_kind
from search.llm import LLMConfig, make_llm

from .final import finalize_prompt_run, prompt_final
from .options import ALGORITHM_STRATEGY, PromptOptions, campaign_task, prompt_options
from .show import demonstration_pairs, prompt_report_sections, prompt_show_lines
from .text import clean_prompt


class PromptKind(KindPlugin):
    name = "prompt"
    options_model = PromptOptions
    default_random_ops = {"prompt_edit": 1.0}
    default_llm_ops = {"prompt_rewrite": 1.0}

    def validate(self, campaign: Campaign) -> None:
        super().validate(campaign)
        o: PromptOptions = campaign.options
        campaign_task(campaign)  # fail early
        wanted = ALGORITHM_STRATEGY[o.algorithm]
        if "strategy" in campaign.search.model_fields_set and campaign.search.strategy != wanted:
            if campaign.search.strategy in ALGORITHM_STRATEGY.values():
                raise ValueError(f"[prompt] algorithm = {o.algorithm!r} but [search] strategy = "
                                 f"{campaign.search.strategy!r}; give one of them")
        else:
            campaign.search.strategy = wanted
        if o.algorithm == "demos" and not campaign.operators.random:
            campaign.operators.random = {"prompt_demo_edit": 1.0}   # the fallback edits demonstrations too
        if campaign.fidelities and "test" in campaign.fidelities:
            raise ValueError("fidelities: 'test' is held out; it is scored after the search for the top "
                             "[prompt] test_top prompts. Use fidelities = [\"minibatch\", \"dev\"]")
        for f in campaign.fidelities or ():
            if f not in ("minibatch", "dev"):
                raise ValueError(f"fidelities: unknown prompt fidelity {f!r}; use minibatch and/or dev")

    def make_evaluator(self, campaign: Campaign, run_dir: Path) -> "PromptEvaluator":
        o = prompt_options(campaign)
        task = campaign_task(campaign)
        cfg = LLMConfig.model_validate(o.task_model or {})
        llm = make_llm(cfg, cache_dir=Path(run_dir) / "task_llm_cache")
        llm_id = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str)
        return PromptEvaluator(task, llm, llm_id=llm_id, minibatch_size=o.minibatch, minibatch_seed=o.minibatch_seed,
                               max_prompt_chars=o.max_prompt_chars, system=o.task_system, metric=o.metric,
                               max_tokens=o.max_tokens, demo_placement=o.demo_placement)

    def seed_texts(self, campaign: Campaign) -> list[tuple[str, str]]:
        o = prompt_options(campaign)
        task = campaign_task(campaign)
        seeds = [("initial", task.initial_prompt)] + [(f"seed{i + 1}", s) for i, s in enumerate(o.seed_prompts)]
        if o.demos:   # k train demonstrations per seed prompt, drawn with the campaign's seed
            rng = random.Random(f"demos:{campaign.random_seed}")
            seeds = [(name, text if decode_prompt(text)[1] else
                      encode_prompt(text, sample_demos(len(task.train), o.demos, rng))) for name, text in seeds]
        return seeds

    def normalize(self, text: str) -> str:
        t = clean_prompt(text) if text.lstrip().lower().startswith("<prompt") else " ".join(text.split())
        if not t:
            raise InvalidCandidate("empty prompt")
        return t

    def describe(self, text: str) -> dict[str, Any]:
        return {"size": len(text.split()), "chars": len(text)}

    def export(self, text: str, out: Path, *, name: str, info: dict[str, Any]) -> None:
        """A ``.json`` path gets the prompt, its instruction and demonstrations (input / output pairs
        from the train split), its scores and task; any other path the instruction, then the
        demonstrations as the task model sees them with the placement "instruction" (plain text)."""
        out = Path(out)
        instruction, idx = decode_prompt(text)
        demos = []
        run = info.get("run")
        if idx and run:
            try:
                demos = _demonstrations(run, idx)
            except Exception as e:  # noqa: BLE001 - the indices are still in the text
                info = {**info, "note": f"demonstrations unavailable ({e}); their train indices: {list(idx)}"}
        if out.suffix.lower() == ".json":
            data: dict[str, Any] = {"prompt": text, "instruction": instruction, "demonstrations": demos, **info}
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
        elif idx:
            shown = "".join(f"\nInput: {d['input']}\nOutput: {d['output']}\n" for d in demos)
            out.write_text(f"{instruction}\n\nExamples (train indices {', '.join(map(str, idx))}):\n{shown}")
        else:
            out.write_text(text.rstrip() + "\n")

    def finalize(self, engine: EngineView) -> dict[str, Any]:
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


def _demonstrations(run: str | Path, idx: tuple[int, ...]) -> list[dict[str, Any]]:
    """The train examples at ``idx`` of the run's task."""
    view = RunView(run)
    try:
        return demonstration_pairs(view.campaign, idx)
    finally:
        view.close()


register_kind(PromptKind())
