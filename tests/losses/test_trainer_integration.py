"""The preset loss stacks train through SentenceTransformerTrainer: a DatasetDict, a dict of losses, image
columns, GradCache, task prompts, and every regulariser logged as its own component."""

from __future__ import annotations

import torch
from datasets import Dataset, DatasetDict
from datasets import Image as ImageFeature
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from st_unirep.losses import build_loss
from tests.conftest import make_image


def test_trainer_runs_the_loss_stack_and_logs_components(_tiny_models, tmp_path):
    import copy

    model = copy.deepcopy(_tiny_models["unirep-m"])
    paths = []
    for index, colour in enumerate(["red", "blue", "green", "black"] * 2):
        path = tmp_path / f"{index}.png"
        make_image(colour=colour).save(path)
        paths.append(str(path))
    data = DatasetDict(
        {
            "text_pair": Dataset.from_dict(
                {
                    "sentence1": ["a cat", "a dog", "một con mèo", "x"] * 2,
                    "sentence2": ["the cat", "a car", "con mèo", "y"] * 2,
                    "score": [4.5, 1.0, 5.0, 0.0] * 2,
                }
            ),
            "ocr": Dataset.from_dict({"anchor": paths, "positive": ["RED", "BLUE", "GREEN", "BLACK"] * 2}).cast_column(
                "anchor", ImageFeature()
            ),
        }
    )
    losses = {
        "text_pair": build_loss(model, "text_pair", "unirep-m", score_range=(0, 5)),
        "ocr": build_loss(model, "ocr", "unirep-m", mini_batch_size=2),
    }
    before = model[2].fc2.weight.detach().clone()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_train_epochs=1,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        prompts={"text_pair": "<text_pair>", "ocr": "<ocr>"},
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=losses)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4
    for entry in logged:
        assert {"task", "uniformity", "anti_collapse", "orthogonality"} <= set(entry)
        parts = entry["task"] + entry["uniformity"] + entry["anti_collapse"] + entry["orthogonality"]
        assert abs(parts - entry["loss"]) < 1e-3
    assert not torch.equal(before, model[2].fc2.weight.detach())
