"""The generation task through the app: gradio_client against an in-process server, on a tiny Llama.

Load a chat JSONL (format detected, rendered through the chat template), start a LoRA run, wait
for it, ask `/generate` for the base and tuned answers. Malformed chat lines come back as messages
naming the line. Also the UI's pure pieces: task detection of a model, the layer diagram of a
Llama stack, the decoding settings, the forgetting sentence.
"""

from __future__ import annotations

import json

import pytest

from test_app_api import serve_studio, wait_for
from tiny_llama import make_tiny_llama, write_chat_jsonl

pytest.importorskip("gradio_client")

TARGET = "My name is Pip."
ONE = [{"role": "user", "content": "What is your name?"}, {"role": "assistant", "content": TARGET}]
TWO = ONE + [{"role": "user", "content": "Again?"}, {"role": "assistant", "content": TARGET}]
GOOD = json.dumps({"messages": ONE})
TRAIN = "train: {method: lora, epochs: 6, batch_size: 4, max_length: 160, learning_rate: 0.03, " \
        "lora_dropout: 0.0, warmup_ratio: 0.0, save_checkpoints: false}\ngenerate: {max_new_tokens: 20}\n"


@pytest.fixture(scope="module")
def tiny_llama(model_root):
    return make_tiny_llama(model_root / "tiny-llama-app")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_llama):
    yield from serve_studio(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="module")
def finished_run(client, tiny_llama, tmp_path_factory):
    """A generation run trained through the API: load_data (chat JSONL) -> start -> completed."""
    data = write_chat_jsonl(tmp_path_factory.mktemp("gen-data") / "pip.jsonl", [ONE, TWO] * 8)
    info = client.predict(str(data), "", "", 0.25, 0, "gina", "generate", str(tiny_llama),
                          api_name="/load_data")
    assert info["task"] == "generate" and info["format"] == "chat"
    assert (info["rows_train"], info["rows_validation"]) == (12, 4)
    assert "### Assistant:" in info["preview"][0] and info["token_stats"]["truncated"] == 0
    started = client.predict(TRAIN, "gina", api_name="/start")
    done = wait_for(client, "gina", started["job_id"], ("completed", "failed"), timeout=180)
    assert done["state"] == "completed", done["error"]
    assert done["evals"] and "eval_accuracy" not in done["evals"][-1]
    return done["job_id"]


def test_generate_endpoint_is_published(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/generate", "/load_data"} <= names


def test_generate_returns_base_and_tuned_answers(client, finished_run):
    answer = client.predict(finished_run, "What is your name?", 20, 0.0, 1.0, "gina", api_name="/generate")
    assert answer["run_id"] == finished_run
    assert answer["tuned"] == TARGET, answer
    assert answer["base"] != answer["tuned"]
    again = client.predict("", "What is your name?", 20, 0.0, 1.0, "gina", api_name="/generate")
    assert again == answer, "greedy answers repeat; no run id means the newest generation run"


@pytest.mark.parametrize("lines, words", [
    ([GOOD, GOOD, '{"messages": [oops', GOOD], "line 3"),
    ([GOOD, json.dumps({"messages": [{"content": "hi"}, ONE[1]]}), GOOD], "line 2: message 1 has no 'role'"),
    ([GOOD, json.dumps({"messages": [ONE[0]]}), GOOD], "line 2: the conversation has no assistant"),
])
def test_malformed_chat_lines_come_back_naming_the_line(client, tiny_llama, tmp_path, lines, words):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(Exception) as info:
        client.predict(str(bad), "", "", 0.2, 0, "hugo", "generate", str(tiny_llama), api_name="/load_data")
    assert words in str(info.value) and "bad.jsonl" in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("args, words", [
    (("", "   "), "no prompt"),
    (("no-such-run", "Hi"), "no run"),
    (("", "Hi", 0), "between 1 and 1024"),
])
def test_generate_errors_are_readable(client, finished_run, args, words):
    with pytest.raises(Exception) as info:
        client.predict(*args, owner="gina", api_name="/generate")
    assert words in str(info.value) and "Traceback" not in str(info.value)


def test_ui_pieces_for_a_llama(tiny_llama, tmp_path):
    from studio.config import TrainSpec
    from studio.ui import compare_gen, gen_actions
    from studio.ui.layers import SkeletonCache, summarize
    cache = SkeletonCache()
    info = cache.info(str(tiny_llama))
    assert (info.task, info.blocks) == ("generate", 2)
    names = [g.name for g in cache.groups(str(tiny_llama), TrainSpec(method="freeze", freeze_depth=1),
                                          task="generate")]
    assert names == ["embeddings", "block 0", "block 1", "head"]
    lora = summarize(cache.groups(str(tiny_llama), TrainSpec(method="lora"), task="generate"))
    assert 0 < lora["share"] < 0.5
    assert gen_actions.settings_from(8, "", None).max_new_tokens == 8
    for base, tuned, words in ((10.0, 10.2, "about as much"), (10.0, 12.0, "20% more"), (10.0, 20.0, "overwrote")):
        assert words in gen_actions.forgetting_sentence(base, tuned)
    import pandas as pd
    table = compare_gen.summary_table(pd.DataFrame([{"metric": "eval_loss", "base": 2.0, "tuned": 1.5,
                                                     "delta": -0.5}]))
    assert table.iloc[0].tolist() == ["validation loss", "2.000", "1.500", "-0.500"]


def test_data_tab_values_highlight_the_learned_answer(tiny_llama, tmp_path):
    from studio.ui import data_tab, gen_actions
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws")
    data = write_chat_jsonl(tmp_path / "pip.jsonl", [ONE] * 6)
    ctx.session("ivy-the-owner").use(str(tiny_llama), "generate")
    sess = gen_actions.load(ctx, "ivy-the-owner", str(data))
    values = data_tab.check_values(sess)
    segments = values[4]
    assert [t for t, tag in segments if tag == "learned"] == [TARGET + "<eos>\n\n"]
    assert "**5** conversations to learn from" in values[2] and "chat" in values[2]
    assert data_tab.table_values(sess)[4] == "chat"
    assert "Pick a sample" in data_tab.table_values(ctx.session("new-owner-x"))[0]


def test_exported_config_is_a_generation_run_the_cli_can_read(tiny_llama, tmp_path):
    from studio.config import RunConfig
    from studio.ui import actions, gen_actions, presets
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws")
    ctx.session("jo-the-owner").use(str(tiny_llama), "generate")
    gen_actions.load(ctx, "jo-the-owner", "identity.jsonl", max_rows=12)
    fast = presets.preset_values("generate", "Teach it fast", blocks=2)
    config = actions.build_config(ctx, "jo-the-owner", fast, "pip")
    again = RunConfig.from_yaml(config.to_yaml())
    assert again == config and again.task == "generate" and again.train.method == "lora"
    assert (again.data.path, again.data.format, again.data.prompt_column) == (
        "assets/samples/identity.jsonl", "chat", "messages")
