#!/usr/bin/env python3
"""Tests of catalog_compat.py on deliberately changed copies of the released catalog: each
breaking change is found (and named), the allowed ones pass. Run by scripts/test.sh."""

import copy
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from catalog_compat import ROOT, breaking_changes, latest_release, messages, resolve  # noqa: E402


class CatalogCompat(unittest.TestCase):
    def setUp(self):
        with open(latest_release()) as f:
            self.released = json.load(f)
        self.new = copy.deepcopy(self.released)
        self.schemas = self.new["components"]["schemas"]

    def breaking(self):
        return breaking_changes(self.released, self.new)

    def assert_breaking(self, fragment):
        problems = self.breaking()
        self.assertTrue(any(fragment in p for p in problems), f"{fragment!r} not in {problems}")

    def test_the_released_catalog_has_every_type_and_the_current_one_is_compatible(self):
        self.assertEqual(len(messages(self.released)), 4)
        self.assertEqual(self.breaking(), [])
        with open(os.path.join(ROOT, "nats", "asyncapi.json")) as f:
            self.assertEqual(breaking_changes(self.released, json.load(f)), [])

    def test_a_removed_type_is_breaking(self):
        for channel in self.new["channels"].values():
            channel["messages"].pop("followupFailed", None)
        self.assert_breaking("lead.followup.failed.v1: type removed")

    def test_a_removed_or_renamed_required_field_is_breaking(self):
        data = self.schemas["FollowupSentData"]
        data["properties"]["runIdentifier"] = data["properties"].pop("runId")
        data["required"] = [r if r != "runId" else "runIdentifier" for r in data["required"]]
        self.assert_breaking("lead.followup.sent.v1 payload.data.runId: removed")

    def test_a_changed_field_type_is_breaking(self):
        self.schemas["LeadChangedData"]["properties"]["sequence"]["type"] = "string"
        self.assert_breaking("lead.changed.v1 payload.data.sequence: type")

    def test_a_narrowed_enum_is_breaking(self):
        self.schemas["FollowupSentData"]["properties"]["kind"]["enum"] = ["t3"]
        self.assert_breaking("enum lost ['t7']")

    def test_a_new_required_field_in_a_v1_type_is_breaking(self):
        data = self.schemas["FollowupFailedData"]
        data["properties"]["channel"] = {"type": "string"}
        data["required"].append("channel")
        self.assert_breaking("lead.followup.failed.v1 payload.data.channel: new required field")

    def test_a_new_type_an_optional_field_and_a_widened_enum_pass(self):
        data = self.schemas["LeadChangedData"]
        data["properties"]["territory"] = {"type": ["string", "null"]}
        self.schemas["FollowupSentData"]["properties"]["kind"]["enum"].append("t14")
        channel = next(iter(self.new["channels"].values()))
        message = copy.deepcopy(resolve(self.new, next(iter(channel["messages"].values()))))
        message["name"] = message["name"].replace(".v1", ".v2")
        channel["messages"]["v2"] = message
        self.assertEqual(self.breaking(), [])


if __name__ == "__main__":
    unittest.main(verbosity=1)
