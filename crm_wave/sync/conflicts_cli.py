"""`crm-wave conflicts`: list the conflict queue, decide items, show the decisions' history."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, UTC
from typing import Any

from crm_wave.logic.decide import DecisionError
from crm_wave.store.queue import decide, list_items

__all__ = ["run_conflicts", "item_line", "review_lines", "RESOLVE_HINT"]

RESOLVE_HINT = "crm-wave conflicts resolve ID... --take crm|wave|newest (or --value TEXT; --all for every one)"
_KIND = {"first_sync": "differs since the first sync", "review": "changed on both sides"}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def item_line(item: dict[str, Any]) -> str:
    """One line per queue item: id, entity, global id, field, both values, base, why, when."""
    head = f"#{item['id']}" if item.get("id") is not None else "(new)"
    text = (f"{head} {item['entity']} {item['global_id']} {item['field']}: CRM {_show(item['crm_value'])} "
            f"vs Wave {_show(item['wave_value'])} (base {_show(item['base_value'])}; {_KIND.get(item['kind'], item['kind'])}; "
            f"CRM edited {item.get('crm_modified') or '?'}, Wave edited {item.get('wave_modified') or '?'}; "
            f"detected {item['detected_at']})")
    if item.get("status") and item["status"] != "open":
        text += f" [{item['status']}"
        if item.get("decision"):
            text += f": {item['decision']} {_show(item['value'])} by {item['decided_by']} at {item['decided_at']}"
        if item.get("closed_at"):
            text += f"; closed {item['closed_at']}"
        text += "]"
    return text


def review_lines(items: list[dict[str, Any]]) -> list[str]:
    """For `crm-wave plan`: the differences that wait for a person, and how to decide them."""
    if not items:
        return []
    return ([f"{len(items)} field difference(s) wait for review (nothing is written for them until decided):"]
            + ["    " + item_line(i) for i in items] + [f"    decide with: {RESOLVE_HINT}"])


def run_conflicts(store: Any, args: argparse.Namespace) -> int:
    """The command; returns an exit code (2 on a decision that cannot be made)."""
    with store.connect() as con:
        if args.action == "resolve":
            return _resolve(store, con, args)
        statuses = ("open",) if args.action == "list" else ("open", "decided", "applied", "superseded")
        items = [i for i in list_items(con, statuses=statuses) if not args.entity or i["entity"] == args.entity]
    for item in items:
        print(item_line(item))
    if args.action == "list":
        print(f"{len(items)} open conflict(s)" + (f"; decide with: {RESOLVE_HINT}" if items else ""))
    else:
        print(f"{len(items)} conflict(s) in the history")
    return 0


def _resolve(store: Any, con: Any, args: argparse.Namespace) -> int:
    take = args.take or ("value" if args.value is not None else None)
    if take is None:
        print("say which value wins: --take crm, --take wave, --take newest or --value TEXT", file=sys.stderr)
        return 2
    if take == "value" and args.value is None:
        print("--take value needs --value TEXT", file=sys.stderr)
        return 2
    if args.value is not None and take != "value":
        print(f"--value and --take {take} contradict each other; give one", file=sys.stderr)
        return 2
    if args.all == bool(args.ids):
        print("name the conflict ids to resolve (see `crm-wave conflicts`), or --all", file=sys.stderr)
        return 2
    if args.all:
        items = [i for i in list_items(con) if not args.entity or i["entity"] == args.entity]
    else:
        items = list_items(con, ids=args.ids)
        unknown = sorted(set(args.ids) - {i["id"] for i in items})
        if unknown:
            print(f"no conflict with id {', '.join(map(str, unknown))}; `crm-wave conflicts` lists the open ones",
                  file=sys.stderr)
            return 2
    try:
        done = decide(store, con, items, take, args.value, args.by or getpass.getuser(),
                      datetime.now(UTC).replace(tzinfo=None))
    except DecisionError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for item in done:
        print(f"#{item['id']} {item['entity']} {item['global_id']} {item['field']}: {item['decision']} "
              f"{_show(item['value'])}")
    print(f"{len(done)} conflict(s) decided; the next sync writes them")
    return 0
