"""The shipped model folders: standard transformers folders, offline, small enough for Spaces, with a model card."""
from conftest import ROOT

TAGGER = ROOT / "checkpoints" / "dish-tagger"
ENCODER = ROOT / "checkpoints" / "albert-pretrained"


def test_every_shipped_file_is_under_10_mb():
    files = [p for p in (ROOT / "checkpoints").rglob("*") if p.is_file()]
    assert files
    assert all(p.stat().st_size < 10 * 1024 * 1024 for p in files), [p for p in files if p.stat().st_size >= 10e6]


def test_transformers_auto_classes_and_pipeline_load_the_tagger_offline():
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(TAGGER)
    model = AutoModelForTokenClassification.from_pretrained(TAGGER)
    assert model.config.id2label == {0: "O", 1: "B-DISH", 2: "I-DISH"}
    assert len(tokenizer) == model.config.vocab_size
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    entities = tagger("We shared the margherita pizza and a tiramisu.")
    assert all(e["entity_group"] == "DISH" and 0 <= e["score"] <= 1 for e in entities)


def test_pretrained_encoder_is_an_albert_pretraining_folder():
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(ENCODER).model_type == "albert"
    assert (ENCODER / "tokenizer.json").exists()


def test_model_card_reports_measured_results():
    card = (TAGGER / "README.md").read_text(encoding="utf-8")
    assert "python -m albert_dish reproduce" in card
    assert "| val | ALBERT (pretrained)" in card and "| test | gazetteer" in card


def test_dish_tagger_finds_dishes_in_an_unseen_review():
    from albert_dish import DishTagger

    text = "Honestly the best tonkotsu ramen in town, and the gyoza were crispy."
    spans = DishTagger.load(TAGGER).tag(text)
    assert all(text[s.start:s.end] == s.text for s in spans)
    assert any("ramen" in s.text.lower() for s in spans)


def test_shipped_tagger_loads_its_corpus_lexicon():
    from albert_dish import DishTagger

    tagger = DishTagger.load(TAGGER)
    assert tagger.lexicon is not None and tagger.lexicon.add and tagger.lexicon.info["lines"] > 20000
    assert tagger.without_lexicon().lexicon is None
