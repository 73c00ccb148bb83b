"""The built-in default training data: a small deterministic multi-task set generated offline in seconds.

- ``ocr``: phrases (English, Vietnamese with diacritics, Chinese when a CJK font is installed, e.g. Debian's
  ``fonts-noto-cjk``) rendered by PIL at random positions, sizes and colours; the positive is the phrase.
- ``vqa_single`` / ``vqa_multi``: synthetic scenes of shapes with colours, counts and positions, questions in
  English and Vietnamese, single- and multi-turn.
- ``text_pair``: graded pairs drawn from the JSONL file the caller names (``sentence1``, ``sentence2``, ``score``;
  ``train/train.py`` names the STS-B train split when it is present, scores 0–5), else templated paraphrase pairs.
- ``instr``: templated instruction → answer pairs.

``heldout/ocr.jsonl`` renders the same phrases with a different seed, as images the training never saw, for the
text → image retrieval check after training; ``dev/ocr.jsonl`` renders them once more, with a seed of its own, for the
evaluation during training (``dev_data: builtin``), so the final check stays untouched by checkpoint selection.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from st_unirep.evaluation.datasets import RetrievalData
from st_unirep.evaluation.metrics import retrieval

logger = logging.getLogger(__name__)

LATIN_MONO_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"]
CJK_FONTS = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
]
PHRASES_EN = [
    "total amount",
    "invoice",
    "receipt",
    "open daily",
    "cash only",
    "thank you",
    "exit",
    "menu",
    "coffee",
    "bakery",
    "parking",
    "pharmacy",
    "hotel",
    "bus stop",
    "sale",
    "closed",
]
PHRASES_VI = [
    "tổng cộng",
    "hóa đơn",
    "cảm ơn",
    "giảm giá",
    "lối ra",
    "nhà thuốc",
    "cà phê sữa",
    "bánh mì",
    "khách sạn",
    "đóng cửa",
    "tiền mặt",
    "thực đơn",
    "bãi đỗ xe",
    "trạm xe buýt",
    "mở cửa",
    "phở bò",
]
PHRASES_ZH = ["发票", "收据", "谢谢", "出口", "咖啡", "药店", "酒店", "停车场"]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
COLOURS_VI = {"red": "đỏ", "green": "xanh lá", "blue": "xanh dương", "yellow": "vàng"}
SHAPES_VI = {"circle": "hình tròn", "square": "hình vuông", "triangle": "tam giác"}
NUMBERS = {1: ("one", "một"), 2: ("two", "hai"), 3: ("three", "ba")}
INSTRUCTIONS = [
    ("What colour is a ripe banana?", "A ripe banana is yellow."),
    ("Màu của quả chuối chín là gì?", "Quả chuối chín có màu vàng."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("Hình tam giác có mấy cạnh?", "Hình tam giác có ba cạnh."),
    ("Find the total on a receipt.", "The total is the last amount printed on the receipt."),
    ("Tìm tổng tiền trên hóa đơn.", "Tổng tiền là số cuối cùng in trên hóa đơn."),
    ("What is the capital of Vietnam?", "Hanoi is the capital of Vietnam."),
    ("Thủ đô của Việt Nam là gì?", "Hà Nội là thủ đô của Việt Nam."),
    ("What do bees make?", "Bees make honey."),
    ("Con ong làm ra gì?", "Con ong làm ra mật ong."),
    ("Which shape has no corners?", "A circle has no corners."),
    ("Hình nào không có góc?", "Hình tròn không có góc."),
]


def _font(paths: list[str], size: int) -> ImageFont.ImageFont | None:
    for path in paths:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return None


def ocr_phrases() -> list[str]:
    """The phrases rendered for OCR; Chinese only when a CJK font is installed."""
    return PHRASES_EN + PHRASES_VI + (PHRASES_ZH if _font(CJK_FONTS, 20) else [])


def render_text(text: str, rng: random.Random, size: tuple[int, int] = (224, 56)) -> Image.Image:
    """``text`` in a monospace grid aligned to Qwen2-VL's 28-pixel visual tokens (14 px per Latin character, 28 per
    CJK character), at a random cell of the image, with random ink and background shades.

    Grid alignment keeps every visual token on the same characters from one rendering to the next, which makes
    reading learnable for the tiny random backbone of the default job in a few minutes (free-floating text at
    random sub-token offsets was not: held-out retrieval stayed at chance after 1,500 steps).
    """
    background = tuple(rng.randint(215, 255) for _ in range(3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    latin = _font(LATIN_MONO_FONTS, 23) or ImageFont.load_default(size=23)
    cjk = _font(CJK_FONTS, 26)
    widths = [28 if ("\u4e00" <= ch <= "\u9fff") else 14 for ch in text]
    total = sum(widths)
    columns = max(0, (size[0] - total) // 28)
    x = 28 * rng.randint(0, columns)
    y = 28 * rng.randint(0, max(0, size[1] // 28 - 1))
    ink = tuple(rng.randint(0, 80) for _ in range(3))
    for ch, width in zip(text, widths, strict=True):
        font = cjk if width == 28 and cjk is not None else latin
        draw.text((x, y + 1), ch, fill=ink, font=font)
        x += width
    return image


def render_scene(rng: random.Random, size: tuple[int, int] = (168, 112)) -> tuple[Image.Image, dict]:
    """Shapes of one colour and kind, 1–3 of them, on the left or the right half."""
    colour, shape, count = rng.choice(list(COLOURS)), rng.choice(list(SHAPES_VI)), rng.randint(1, 3)
    side = rng.choice(["left", "right"])
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    half = size[0] // 2
    for index in range(count):
        cx = (0 if side == "left" else half) + 14 + index * 24
        cy = rng.randint(24, size[1] - 24)
        box = (cx - 10, cy - 10, cx + 10, cy + 10)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(cx, cy - 10), (cx - 10, cy + 10), (cx + 10, cy + 10)], fill=COLOURS[colour])
    return image, {"colour": colour, "shape": shape, "count": count, "side": side}


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def _text_pairs(graded: Path | None, count: int, rng: random.Random) -> list[dict]:
    """``count`` rows of ``graded`` (a JSONL of ``sentence1``, ``sentence2``, ``score``) in a shuffled order, or, with
    no file, templated pairs (paraphrase 5.0, other colour 2.0)."""
    if graded is not None:
        if not graded.is_file():
            raise FileNotFoundError(f"Graded text pairs {str(graded)!r} do not exist")
        rows = [json.loads(line) for line in graded.read_text(encoding="utf-8").splitlines() if line.strip()]
        rng.shuffle(rows)
        return [
            {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "score": float(r["score"])} for r in rows[:count]
        ]
    logger.info("No graded pairs file: generating templated text pairs")
    rows = []
    for _ in range(count):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(list(SHAPES_VI))
        other = rng.choice([c for c in COLOURS if c != colour])
        rows.append({"sentence1": f"A {colour} {shape}.", "sentence2": f"There is a {colour} {shape}.", "score": 5.0})
        rows.append({"sentence1": f"A {colour} {shape}.", "sentence2": f"A {other} {shape}.", "score": 2.0})
    return rows[:count]


class _ImageFolder:
    """Saves the generated images under ``<root>/images`` and returns their paths relative to ``root``."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "images"
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, image: Image.Image, name: str) -> str:
        image.save(self.folder / name)
        return f"images/{name}"


def _ocr_rows(phrases: list[str], copies: int, rng: random.Random, images: _ImageFolder) -> list[dict]:
    """``copies`` renderings of every phrase; every second copy also asks a question about the sign."""
    rows = []
    for copy in range(copies):
        for index, phrase in enumerate(phrases):
            path = images.save(render_text(phrase, rng), f"ocr_{index}_{copy}.png")
            row = {"images": [path], "positive": phrase}
            if copy % 2:
                row["query"] = rng.choice(["What does the sign say?", "Văn bản trong ảnh là gì?"])
            rows.append(row)
    return rows


def _heldout_rows(
    phrases: list[str], copies: int, rng: random.Random, images: _ImageFolder, split: str = "heldout"
) -> list[dict]:
    """Renderings of the same phrases from their own generator, for ``<split>/ocr.jsonl``."""
    rows = []
    for copy in range(copies):
        for index, phrase in enumerate(phrases):
            name = images.save(render_text(phrase, rng), f"{split}_{index}_{copy}.png")
            rows.append({"images": [f"../{name}"], "positive": phrase})  # paths are relative to <split>/
    return rows


def _scene_question(facts: dict, kind: str, english: bool) -> tuple[str, str]:
    """The (question, answer) about one fact of a scene, in English or Vietnamese."""
    if kind == "colour":
        if english:
            return "What colour are the shapes?", facts["colour"]
        return "Các hình có màu gì?", COLOURS_VI[facts["colour"]]
    if kind == "count":
        if english:
            return "How many shapes are there?", NUMBERS[facts["count"]][0]
        return "Có bao nhiêu hình?", NUMBERS[facts["count"]][1]
    if kind == "shape":
        return ("Which shape is drawn?", facts["shape"]) if english else ("Đây là hình gì?", SHAPES_VI[facts["shape"]])
    if english:
        return "On which side are the shapes?", facts["side"]
    return "Các hình nằm ở bên nào?", "bên trái" if facts["side"] == "left" else "bên phải"


def _vqa_single_rows(count: int, rng: random.Random, images: _ImageFolder) -> list[dict]:
    """One question per scene about its colour, count, shape or side."""
    rows = []
    for index in range(count):
        image, facts = render_scene(rng)
        path = images.save(image, f"scene_{index}.png")
        english = rng.random() < 0.5
        question, answer = _scene_question(facts, rng.choice(["colour", "count", "shape", "side"]), english)
        rows.append({"images": [path], "question": question, "answer": answer})
    return rows


def _vqa_multi_rows(count: int, rng: random.Random, images: _ImageFolder) -> list[dict]:
    """A two-turn dialogue per scene: its colour, then how many shapes of what kind."""
    rows = []
    for index in range(count):
        image, facts = render_scene(rng)
        path = images.save(image, f"dialog_{index}.png")
        rows.append(
            {
                "images": [path],
                "conversation": [
                    {"role": "user", "content": "What colour are the shapes?"},
                    {"role": "assistant", "content": facts["colour"]},
                    {"role": "user", "content": "And how many are there?"},
                ],
                "answer": f"{NUMBERS[facts['count']][0]} {facts['colour']} {facts['shape']}s",
            }
        )
    return rows


def generate_default_data(
    root: str | Path,
    *,
    ocr_per_phrase: int = 6,
    vqa_single: int = 96,
    vqa_multi: int = 48,
    text_pairs: int = 192,
    heldout_per_phrase: int = 1,
    dev_per_phrase: int = 1,
    stsb_path: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Write the default multi-task set under ``root`` (task JSONL files + ``images/``) and return ``root``.

    ``stsb_path``: a JSONL file of graded pairs (``sentence1``, ``sentence2``, ``score``, e.g. the STS-B train
    split) from which the ``text_pair`` rows are drawn; None: templated pairs. Deterministic for a given ``seed``
    (and file); about 3 s on a CPU. ``heldout/ocr.jsonl`` holds unseen renderings (the final check) and
    ``dev/ocr.jsonl`` other unseen renderings (evaluation during training, ``dev_data: builtin``), each from its own
    generator, so neither changes the training rows.
    """
    root = Path(root)
    rng = random.Random(seed)
    images = _ImageFolder(root)
    phrases = ocr_phrases()
    # One generator, drawn in this order (the held-out renderings have their own): the data depend on the order.
    _write(root / "ocr.jsonl", _ocr_rows(phrases, ocr_per_phrase, rng, images))
    heldout = _heldout_rows(phrases, heldout_per_phrase, random.Random(seed + 10_000), images)
    _write(root / "heldout" / "ocr.jsonl", heldout)
    dev = _heldout_rows(phrases, dev_per_phrase, random.Random(seed + 20_000), images, split="dev")
    _write(root / "dev" / "ocr.jsonl", dev)
    _write(root / "vqa_single.jsonl", _vqa_single_rows(vqa_single, rng, images))
    _write(root / "vqa_multi.jsonl", _vqa_multi_rows(vqa_multi, rng, images))
    graded = Path(stsb_path) if stsb_path is not None else None
    _write(root / "text_pair.jsonl", _text_pairs(graded, text_pairs, rng))
    _write(root / "instr.jsonl", [{"query": q, "positive": a} for q, a in INSTRUCTIONS] * 4)
    return root


def ocr_retrieval_data(data_root: str | Path, split: str = "heldout") -> RetrievalData:
    """``<data_root>/<split>/ocr.jsonl`` (unseen renderings: ``heldout`` or ``dev``) as text <-> image retrieval data
    named ``ocr``: each phrase must retrieve its own rendering among all of them."""
    folder = Path(data_root) / split
    rows = [json.loads(line) for line in (folder / "ocr.jsonl").read_text("utf-8").splitlines()]
    images = [str((folder / row["images"][0]).resolve()) for row in rows]
    texts = [row["positive"] for row in rows]
    return RetrievalData("ocr", texts, images, [{index} for index in range(len(rows))], image_corpus=True)


def heldout_ocr_retrieval(model, data_root: str | Path, batch_size: int = 32) -> dict[str, float]:
    """Text → image R@1 on ``<data_root>/heldout/ocr.jsonl`` (renderings the training never saw): each phrase must
    retrieve its own image among all held-out images. Returns ``{"r@1", "chance", "n"}``."""
    data = ocr_retrieval_data(data_root, "heldout")
    image_embeddings = model.encode(data.corpus, batch_size=batch_size, normalize_embeddings=True)
    text_embeddings = model.encode(data.queries, batch_size=batch_size, normalize_embeddings=True)
    r1 = retrieval(text_embeddings @ image_embeddings.T, data.relevant, ks=(1,))["r@1"]
    return {"r@1": r1, "chance": 1.0 / len(data.queries), "n": len(data.queries)}
