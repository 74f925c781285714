"""Generation data: three layouts parse to the same conversations; bad rows are named by line."""

import json

import pandas as pd
import pytest

from studio.config import DataSpec
from studio.errors import ConfigError, DataError
from studio.gendata import load_generation, parse_messages, preview, read_conversations, token_stats
from studio.tasks.generate import encode_all, load_tokenizer
from tiny_llama import CHATML, char_tokenizer

PAIRS = [("What is your name?", "I am Pip."), ("Who made you?", "Fine-Tune Studio, with a comma."),
         ("Say \"hi\"", "hi\nthere")]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _csv(tmp_path):
    return pd.DataFrame(PAIRS, columns=["prompt", "response"]).to_csv(tmp_path / "d.csv", index=False) \
        or tmp_path / "d.csv"


def _alpaca(tmp_path):
    rows = [{"instruction": p, "input": "", "output": r} for p, r in PAIRS]
    return _write(tmp_path / "d.json", json.dumps(rows))


def _chat(tmp_path):
    lines = [json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]})
             for p, r in PAIRS]
    return _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")


def _sharegpt(tmp_path):
    lines = [json.dumps({"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": r}]})
             for p, r in PAIRS]
    return _write(tmp_path / "s.jsonl", "\n".join(lines) + "\n")


def _xlsx(tmp_path):
    pd.DataFrame(PAIRS, columns=["question", "answer"]).to_excel(tmp_path / "d.xlsx", index=False)
    return tmp_path / "d.xlsx"


@pytest.mark.parametrize("writer,fmt", [(_csv, "prompt_response"), (_alpaca, "alpaca"), (_chat, "chat"),
                                        (_sharegpt, "chat"), (_xlsx, "prompt_response")])
def test_every_format_parses_to_the_same_conversations(tmp_path, writer, fmt):
    convs, columns, _ = read_conversations(writer(tmp_path))
    assert columns.format == fmt
    assert convs == [[{"role": "user", "content": p}, {"role": "assistant", "content": r}] for p, r in PAIRS]


def test_alpaca_input_joins_the_instruction(tmp_path):
    path = _write(tmp_path / "a.jsonl", json.dumps({"instruction": "Add", "input": "2 and 3", "output": "5"}) + "\n")
    convs, _, _ = read_conversations(path)
    chat = _write(tmp_path / "c.jsonl", json.dumps({"messages": [{"role": "user", "content": "Add\n\n2 and 3"},
                                                                 {"role": "assistant", "content": "5"}]}) + "\n")
    assert convs == read_conversations(chat)[0]


GOOD = {"role": "user", "content": "hi"}
ANSWER = {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize("messages,expected", [
    ([GOOD, {"content": "x"}], "message 2 has no 'role'"),
    ([GOOD, {"role": "bot", "content": "x"}], "role \"bot\""),
    ([GOOD, {"role": "assistant", "content": "  "}], "message 2 (assistant) is empty"),
    ([GOOD, {"role": "assistant", "content": 42}], "content of type number"),
    ([GOOD, {"role": "assistant"}], "has no 'content'"),
    ([GOOD, {"role": "system", "content": "s"}, ANSWER], "only the first message"),
    ([GOOD], "no assistant message"),
    ([ANSWER], "no user message"),
    ([ANSWER, GOOD, ANSWER], "before any user message"),
    (["hi", ANSWER], "message 1 is text"),
    ("just words", "must be a list"),
    ([], "non-empty list"),
])
def test_bad_conversations_are_named_by_line(tmp_path, messages, expected):
    good = json.dumps({"messages": [GOOD, ANSWER]})
    path = _write(tmp_path / "c.jsonl", "\n".join([good, good, json.dumps({"messages": messages}), good]) + "\n")
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert expected in err.value.user_message
    assert "c.jsonl line 3" in err.value.user_message


def test_malformed_jsonl_line_is_reported_with_its_line_number(tmp_path):
    good = json.dumps({"messages": [GOOD, ANSWER]})
    path = _write(tmp_path / "c.jsonl", f"{good}\n{good}\n\n{{\"messages\": [{{\"role\": \"user\"\n{good}\n")
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert "line 4" in err.value.user_message and "not valid JSON" in err.value.user_message


def test_several_bad_lines_are_all_mentioned(tmp_path):
    good, bad = json.dumps({"messages": [GOOD, ANSWER]}), json.dumps({"messages": [GOOD]})
    path = _write(tmp_path / "c.jsonl", "\n".join([good, bad, good, bad, bad]) + "\n")
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert "line 2" in err.value.where and "lines 4, 5" in err.value.hint


def test_empty_responses_list_their_lines_and_blank_rows_are_skipped(tmp_path):
    path = _write(tmp_path / "d.csv", "prompt,response\na,b\nc,\n,\nd,e\n")
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert "d.csv line 3" in err.value.user_message and "response" in err.value.user_message
    convs, _, warnings = read_conversations(_write(tmp_path / "e.csv", "prompt,response\na,b\n,\nd,e\n"))
    assert len(convs) == 2 and any("line 3" in w for w in warnings)


def test_format_override_and_column_choice(tmp_path):
    path = _write(tmp_path / "d.csv", "q,a,notes\nhi,hello,x\nyo,hey,y\n")
    with pytest.raises(DataError, match="no prompt and answer columns"):
        load_generation(DataSpec(path=str(path)))
    data = load_generation(DataSpec(path=str(path), prompt_column="q", response_column="a"))
    assert data.format == "prompt_response" and len(data.train) + len(data.validation) == 2
    with pytest.raises(DataError, match="messages"):
        load_generation(DataSpec(path=str(path), format="chat"))
    with pytest.raises(ConfigError):
        load_generation(DataSpec(path=str(path), format="text_label"))


def test_split_is_seeded_and_keeps_every_example(tmp_path):
    lines = [json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) for i in range(20)]
    path = _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    first = load_generation(DataSpec(path=str(path), validation_split=0.25), seed=1)
    again = load_generation(DataSpec(path=str(path), validation_split=0.25), seed=1)
    assert (len(first.train), len(first.validation)) == (15, 5)
    assert first.validation == again.validation
    assert sorted(c[0]["content"] for c in first.train + first.validation) == sorted(f"q{i}" for i in range(20))


def test_token_stats_count_truncation_and_preview_shows_the_template():
    tok = load_tokenizer_from(char_tokenizer(CHATML))
    convs = [[{"role": "user", "content": "x" * n}, {"role": "assistant", "content": "yes"}] for n in (5, 10, 60)]
    stats = token_stats(encode_all(tok, convs, 48), 48)
    assert stats.truncated == 1 and stats.truncated_share == pytest.approx(1 / 3)
    assert stats.no_answer_left == 1 and stats.max_tokens > 60
    assert any("cut" in w for w in stats.warnings())
    shown = preview(convs, tok, n=2)
    assert shown["rendered"][0].startswith("<|im_start|>user\nxxxxx<|im_end|>")
    assert shown["learned"][0] == "yes<|im_end|>"


def load_tokenizer_from(tokenizer):
    """The studio's tokenizer setup (template, pad) applied to an in-memory tokenizer."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return load_tokenizer(folder)


def test_parse_messages_accepts_a_wrapped_object():
    assert parse_messages(json.dumps({"messages": [GOOD, ANSWER]})) == [GOOD, ANSWER]


@pytest.mark.parametrize("sample,fmt", [("identity.jsonl", "chat"), ("pirate.csv", "prompt_response")])
def test_bundled_samples_summarize_for_the_data_tab(sample, fmt):
    from conftest import SAMPLES
    from studio.gendata import summarize
    tok = load_tokenizer_from(char_tokenizer())
    info = summarize(DataSpec(path=str(SAMPLES / sample)), tok, max_length=512)
    assert info["format"] == fmt and info["rows_train"] > 3 * info["rows_validation"] > 0
    assert info["stats"].truncated == 0 and not info["warnings"]
    assert [tag for _, tag in info["segments"]] == [None, "learned"]
    assert info["preview"]["rendered"][0].startswith("<bos>")
