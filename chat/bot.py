"""The rule bot: a site's greeting, its keyword answers and its fallback (ChatSettings). The AI
issue replaces `answer` with its agent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from chat.models import MAX_TEXT, ChatSettings
from core.models import Site

BOT_NAME = "Bot"
DEFAULT_GREETING = ChatSettings._meta.get_field("greeting").get_default()
MAX_RULES = 100
MAX_KEYWORD = 100
RULE_HELP = (
    f'Each rule is {{"keyword", "answer"}}, non-empty: at most {MAX_KEYWORD} and {MAX_TEXT} characters.'
)


def settings_for(site: Site) -> ChatSettings | None:
    return ChatSettings.objects.filter(site=site).first()


def greeting(site: Site) -> str:
    chat_settings = settings_for(site)
    return DEFAULT_GREETING if chat_settings is None else chat_settings.greeting


def answer(site: Site, text: str) -> str:
    """The first rule whose keyword is in `text` (without case), else the fallback ('' for none)."""
    chat_settings = settings_for(site)
    if chat_settings is None:
        return ""
    lowered = text.casefold()
    for rule in chat_settings.rules:
        if rule["keyword"].casefold() in lowered:
            return str(rule["answer"])
    return chat_settings.fallback


def clean_rules(rules: Any) -> list[dict[str, str]]:
    """`[{"keyword", "answer"}]`, each a non-empty string; raises ValidationError keyed `rules`."""
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise ValidationError({"rules": [f'A list of at most {MAX_RULES} {{"keyword", "answer"}} objects.']})
    cleaned = []
    for rule in rules:
        if (
            not isinstance(rule, dict)
            or set(rule) != {"keyword", "answer"}
            or not all(isinstance(rule[name], str) and rule[name].strip() for name in rule)
            or len(rule["keyword"]) > MAX_KEYWORD
            or len(rule["answer"]) > MAX_TEXT
        ):
            raise ValidationError({"rules": [RULE_HELP]})
        cleaned.append({"keyword": rule["keyword"].strip(), "answer": rule["answer"]})
    return cleaned
