"""The OpenAI-compatible API through the official `openai` Python SDK, as a user would call it.

Lists the models, streams an answer that must quote the avatar's documents (`--expect`) and
end with the usage, asks again without streaming, embeds two texts, and checks that a bad key
and an unknown model raise the SDK's own exceptions. Prints one JSON line with what it saw;
exits 1 on the first thing that is not as OpenAI's own API would have it.
"""

import argparse
import json
import sys

import openai


def check(condition, message):
    if not condition:
        print(f"openai-smoke: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--embedding-model", required=True)
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0)

    models = [model.id for model in client.models.list()]
    check(args.model in models, f"{args.model} not among the models {models}")

    stream = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": args.question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        check(chunk.object == "chat.completion.chunk", f"a chunk's object is {chunk.object}")
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    check(args.expect.lower() in text.lower(), f"the answer does not quote {args.expect!r}: {text[:400]!r}")
    check(finish == "stop", f"finish_reason {finish}")
    # (Without an LLM the answer quotes passages and no model tokens are spent: 0 is right.)
    check(usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
          f"usage {usage}")

    whole = client.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": args.question}]
    )
    check(whole.object == "chat.completion", f"object {whole.object}")
    check(args.expect.lower() in (whole.choices[0].message.content or "").lower(), "the whole answer")
    check(whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens, "usage sums")

    embedded = client.embeddings.create(model=args.embedding_model, input=["first text", "second text"])
    check([item.index for item in embedded.data] == [0, 1], "embeddings in order")
    check(len(embedded.data[0].embedding) > 0, "an empty vector")

    try:
        client.models.retrieve("no-such-avatar")
        check(False, "an unknown model was found")
    except openai.NotFoundError as error:
        check(error.code == "model_not_found", f"code {error.code}")
    try:
        openai.OpenAI(base_url=args.base_url, api_key="ap_wrong", max_retries=0).models.list()
        check(False, "a bad key was accepted")
    except openai.AuthenticationError:
        pass

    print(json.dumps({
        "sdk": openai.__version__,
        "models": models,
        "streamed_chunks": chunks,
        "answer_chars": len(text),
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
        "embedding_dimensions": len(embedded.data[0].embedding),
    }))


if __name__ == "__main__":
    main()
