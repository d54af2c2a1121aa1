#!/usr/bin/env python3
"""Checks polkit/org.kiln.builder1.policy against the table in DESIGN.md.

usage: check-policy.py POLICY

The policy must declare exactly the five kiln actions, each with the
documented defaults, a description, a message, and a SECURITY: comment.
"""
import sys
import xml.etree.ElementTree as ET

# action id -> (allow_any, allow_inactive, allow_active), from DESIGN.md
EXPECTED = {
    'org.kiln.builder1.create': ('auth_admin', 'auth_admin', 'yes'),
    'org.kiln.builder1.run': ('auth_admin', 'auth_admin', 'yes'),
    'org.kiln.builder1.run-privileged': ('auth_admin_keep',) * 3,
    'org.kiln.builder1.mount': ('auth_admin_keep',) * 3,
    'org.kiln.builder1.manage-all': ('auth_admin_keep',) * 3,
}
DEFAULT_KEYS = ('allow_any', 'allow_inactive', 'allow_active')


def parse(path):
    # Keep comments: each action must carry its SECURITY: comment.
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    return ET.parse(path, parser=parser).getroot()


def check_action(action):
    """Returns a list of problems with one <action> element."""
    problems = []
    action_id = action.get('id')
    for tag in ('description', 'message'):
        element = action.find(tag)
        if element is None or not (element.text or '').strip():
            problems.append(f'{action_id}: no <{tag}>')
    comments = [c.text or '' for c in action if c.tag is ET.Comment]
    if not any(c.strip().startswith('SECURITY:') for c in comments):
        problems.append(f'{action_id}: no <!-- SECURITY: ... --> comment')
    defaults = action.find('defaults')
    if defaults is None:
        return problems + [f'{action_id}: no <defaults>']
    found = tuple((defaults.findtext(key) or '').strip() for key in DEFAULT_KEYS)
    if found != EXPECTED[action_id]:
        problems.append(f'{action_id}: defaults {found}, expected {EXPECTED[action_id]}')
    return problems


def main():
    root = parse(sys.argv[1])
    actions = root.findall('action')
    ids = [a.get('id') for a in actions]
    problems = []
    if sorted(ids) != sorted(EXPECTED):
        problems.append(f'actions {sorted(ids)}, expected {sorted(EXPECTED)}')
    for action in actions:
        if action.get('id') in EXPECTED:
            problems += check_action(action)
    for problem in problems:
        print(f'FAIL: {problem}', file=sys.stderr)
    if problems:
        return 1
    print(f'PASS: {len(actions)} actions with the documented defaults')
    return 0


if __name__ == '__main__':
    sys.exit(main())
