"""What the generator asks for each paragraph, and the cache key of the answer.

The paper (Appendix B) asked an LLM, for each paragraph of the training text, for up to five
questions: a short context taken from the paragraph, its true continuation, and a false
continuation almost identical to the true one except in a key fact, answered in JSON.
"""

from __future__ import annotations

import hashlib
import json

PROMPT_VERSION = 1
MAX_QUESTIONS = 5  # the paper's number per paragraph

SYSTEM_PROMPT = (
    "You write test questions that check whether a language model remembers the facts of a text "
    "it was trained on. You answer with JSON only."
)

# The paper's instruction (Appendix B), restated. Changing it changes what the cache means:
# bump PROMPT_VERSION with it, so old answers are not reused for a new prompt.
USER_PROMPT = """Read the paragraph below and write up to 5 questions about facts it states.
Each question has three parts:
- "context": a short passage copied from the paragraph (a few words up to one sentence) that leads up to a fact;
- "true": the words that follow the context in the paragraph and complete the fact correctly;
- "false": the true continuation with only its key fact changed (a name, number, date, place or relation), otherwise word for word the same, and still fluent and plausible.
The context, a space and the true continuation must read as the paragraph does. Ask only about facts the paragraph states.
Answer with a JSON object and nothing else, in this form:
{{"questions": [{{"context": "...", "true": "...", "false": "..."}}]}}

Paragraph:
<<<
{text}
>>>"""


def generator_name(llm: str) -> str:
    return f"openai:{llm}@{PROMPT_VERSION}"


def cache_key(llm: str, text: str) -> str:
    payload = json.dumps([PROMPT_VERSION, llm, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_messages(text: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(text=text)},
    ]
