#!/usr/bin/env python3
"""Audit records: a run that weakens isolation, polkit's refusal, a Mount and a builder removed by
someone other than its owner each leave exactly one record; an ordinary run leaves none. The test
environment runs no journal, so the records are lines of kilnd's log (DIR/kilnd.log), KEY="value"
pairs (service/base/audit.h); the MESSAGE_IDs are the documented ones (kilnd(8), AUDIT).

kiln-alice gets run-privileged through the environment's marker (the test polkit rules), as in
test_userns, whose set-up (subordinate ids for her, so her ordinary runs keep a user namespace) is
reused here.
"""
import ast
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402
import test_userns as tu  # noqa: E402

ID_RUN_WEAKENED = 'eede1a6274ef408789e0315eb32d6dc6'
ID_REFUSED = 'ff73b402832d4fdda488d1973887e512'
ID_MOUNT = '1bc7d05dbb3a4173ac17f48160de99fd'
ID_REMOVED_FOR_OTHER = '0496fa5132334e338857a4afaf33ecbd'
ALL_IDS = (ID_RUN_WEAKENED, ID_REFUSED, ID_MOUNT, ID_REMOVED_FOR_OTHER)

FIELD_RE = re.compile(r' ([A-Z_]+)="((?:[^"\\]|\\.)*)"')
UNIQUE_NAME_RE = re.compile(r'^:[0-9]+\.[0-9]+$')


def setUpModule():
    tu.setup_with()


def tearDownModule():
    tu.tearDownModule()


def parse_record(line):
    """The fields of one audit line, values unescaped (g_strescape is C escaping)."""
    text = line[line.index('audit:') + len('audit:'):]
    return {k: ast.literal_eval(f'"{v}"') for k, v in FIELD_RE.findall(text)}


class Audit(kr.RunTestCase):
    """Only the oci isolation: what is recorded does not depend on it."""

    isolation = 'oci'

    def setUp(self):
        super().setUp()
        self.set_trusted(False)

    def tearDown(self):
        self.set_trusted(False)
        super().tearDown()

    # test_userns's helpers, as the other modules borrow them: run-privileged for kiln-alice, builders
    # alice made herself.
    set_trusted = tu.UsernsCases_oci.set_trusted
    alices_builder = tu.UsernsCases_oci.alices_builder

    def log_mark(self):
        return os.path.getsize(self.env.kilnd_log)

    def records_since(self, mark):
        """The audit records kilnd logged after @mark (a log_mark())."""
        with open(self.env.kilnd_log, 'rb') as f:
            f.seek(mark)
            text = f.read().decode('utf-8', 'replace')
        return [parse_record(line) for line in text.splitlines()
                if 'audit:' in line and any(f'MESSAGE_ID="{i}"' in line for i in ALL_IDS)]

    def assert_caller(self, record, user):
        self.assertEqual(record['KILN_CALLER_UID'], str(self.uid(user)), record)
        self.assertRegex(record['KILN_CALLER_NAME'], UNIQUE_NAME_RE)

    def test_weakened_run_is_recorded_once(self):
        b = self.alices_builder()
        self.set_trusted(True)
        mark = self.log_mark()
        self.run_ok('--network', 'host', b.name, 'echo', 'audited', user=kt.ALICE)
        records = self.records_since(mark)
        self.assertEqual(len(records), 1, records)
        r = records[0]
        self.assertEqual(r['MESSAGE_ID'], ID_RUN_WEAKENED)
        self.assert_caller(r, kt.ALICE)
        self.assertIn('network=host', r['KILN_WEAKENS'].split('; '))
        self.assertEqual(r['KILN_RESULT'], 'granted')
        self.assertEqual(r['KILN_ACTION'], 'org.kiln.builder1.run-privileged')
        self.assertEqual(r['KILN_BUILDER'], b.id)
        self.assertEqual(r['KILN_ARGV'], 'echo audited')

    def test_refusal_is_recorded_once(self):
        b = self.alices_builder()
        mark = self.log_mark()
        r = self.captured(b, ['echo', 'refused'], {'network': 'host'}, user=kt.ALICE)
        self.assertError(r, kt.E_INTERACTIVE, ['run-privileged'])
        records = self.records_since(mark)
        self.assertEqual(len(records), 1, records)
        rec = records[0]
        self.assertEqual(rec['MESSAGE_ID'], ID_REFUSED)
        self.assert_caller(rec, kt.ALICE)
        self.assertEqual(rec['KILN_RESULT'], 'refused')
        self.assertEqual(rec['KILN_ACTION'], 'org.kiln.builder1.run-privileged')
        self.assertIn('network=host', rec['KILN_WEAKENS'].split('; '))
        self.assertEqual(rec['KILN_BUILDER'], b.name)
        self.assertEqual(rec['KILN_ARGV'], 'echo refused')

    def test_refused_create_is_recorded_with_the_name_asked_for(self):
        mark = self.log_mark()
        r = self.create_call('bobs-audit', 'scratch', user=kt.BOB)
        self.assertError(r, kt.E_INTERACTIVE, ['org.kiln.builder1.create'])
        records = self.records_since(mark)
        self.assertEqual(len(records), 1, records)
        rec = records[0]
        self.assertEqual(rec['MESSAGE_ID'], ID_REFUSED)
        self.assert_caller(rec, kt.BOB)
        self.assertEqual(rec['KILN_ACTION'], 'org.kiln.builder1.create')
        self.assertEqual(rec['KILN_BUILDER'], 'bobs-audit')
        self.assertEqual(rec['KILN_RESULT'], 'refused')
        self.assertNotIn('KILN_WEAKENS', rec)

    def test_ordinary_run_is_not_recorded(self):
        b = self.alices_builder()
        mark = self.log_mark()
        self.run_ok(b.name, 'true', user=kt.ALICE)
        self.assertEqual(self.records_since(mark), [])

    def test_mount_is_recorded(self):
        b = self.alices_builder()
        mark = self.log_mark()
        self.env.kiln('mount', b.name, check=True)
        try:
            records = self.records_since(mark)
        finally:
            self.env.kiln('umount', b.name, check=True)
        self.assertEqual(len(records), 1, records)
        r = records[0]
        self.assertEqual(r['MESSAGE_ID'], ID_MOUNT)
        self.assert_caller(r, None)
        self.assertEqual(r['KILN_BUILDER'], b.id)
        self.assertEqual(r['KILN_ACTION'], 'org.kiln.builder1.mount')
        self.assertEqual(r['KILN_RESULT'], 'granted')

    def test_removal_for_another_user_is_recorded(self):
        b = self.alices_builder()
        owner = self.alices_builder()
        mark = self.log_mark()
        # Her own removal is hers to make: no record.
        self.env.kiln('rm', owner.name, user=kt.ALICE, check=True)
        self.assertEqual(self.records_since(mark), [])
        self.env.kiln('rm', b.name, check=True)
        records = self.records_since(mark)
        self.assertEqual(len(records), 1, records)
        r = records[0]
        self.assertEqual(r['MESSAGE_ID'], ID_REMOVED_FOR_OTHER)
        self.assert_caller(r, None)
        self.assertEqual(r['KILN_BUILDER'], b.id)
        self.assertIn(str(self.uid(kt.ALICE)), r['MESSAGE'])
        self.assertEqual(self.list_builders(), [])


if __name__ == '__main__':
    kt.main()
