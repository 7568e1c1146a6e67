"""A real client: Hugging Face ``transformers.Trainer`` trains a tiny GPT-2 (built from a config,
nothing downloaded) with an exported optimizer and an LR scheduler, checkpoints, and a second
Trainer resumes from the checkpoint with the same losses as the uninterrupted run."""
import os

import pytest
import torch

import dsl
from dsl_cases import load_export

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import transformers  # noqa: E402  (after the offline switches)

STEPS, SAVE_AT = 8, 4


class TokenData(torch.utils.data.Dataset):
    """Counting sequences from random starts: the next token is learnable."""

    def __init__(self, n=32, length=12, vocab=40, seed=0):
        gen = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (n, 1), generator=gen)
        self.x = (start + torch.arange(length)) % vocab

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


class LossLog(transformers.TrainerCallback):
    def __init__(self):
        self.losses = {}

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses[state.global_step] = logs["loss"]


def load_exported(rule, class_name, tmp_path):
    return load_export(dsl.get_rule(rule), class_name, tmp_path, f"{class_name.lower()}_opt")[0]


def make_trainer(Opt, out_dir, log):
    transformers.set_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config)
    opt = Opt(model.parameters(), lr=1e-2 if Opt.__name__ != "Lion" else 1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / (2 * STEPS))
    args = transformers.TrainingArguments(
        output_dir=str(out_dir), max_steps=STEPS, per_device_train_batch_size=4, logging_steps=1,
        save_steps=SAVE_AT, save_strategy="steps", report_to=[], use_cpu=True, seed=0, data_seed=0,
        dataloader_num_workers=0, disable_tqdm=True, save_only_model=False)
    return transformers.Trainer(model=model, args=args, train_dataset=TokenData(), optimizers=(opt, sched),
                                callbacks=[log])


@pytest.mark.parametrize("rule, class_name", [("adamw", "AdamW"), ("lion", "Lion")])
def test_trainer_resumes_from_checkpoint_with_identical_losses(rule, class_name, tmp_path):
    Opt = load_exported(rule, class_name, tmp_path)
    full_log = LossLog()
    full = make_trainer(Opt, tmp_path / "full", full_log)
    full.train()
    assert sorted(full_log.losses) == list(range(1, STEPS + 1))
    ckpt = tmp_path / "full" / f"checkpoint-{SAVE_AT}"
    assert (ckpt / "optimizer.pt").exists() and (ckpt / "scheduler.pt").exists()

    resumed_log = LossLog()
    resumed = make_trainer(Opt, tmp_path / "resumed", resumed_log)
    resumed.train(resume_from_checkpoint=str(ckpt))
    opt = resumed.optimizer.optimizer if hasattr(resumed.optimizer, "optimizer") else resumed.optimizer
    assert isinstance(opt, Opt)
    assert sorted(resumed_log.losses) == list(range(SAVE_AT + 1, STEPS + 1))
    for step in range(SAVE_AT + 1, STEPS + 1):
        assert resumed_log.losses[step] == full_log.losses[step], step
    # the optimizer's state and the scheduler's lr continued, not restarted
    assert all(float(st["step"]) == STEPS for st in opt.state.values())
    assert opt.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)
    # the losses moved (training happened) and are finite
    losses = [full_log.losses[s] for s in range(1, STEPS + 1)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
