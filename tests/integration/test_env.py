#!/usr/bin/env python3
"""The test environment is real: a private bus, the host's polkitd knowing
kiln's actions and applying the test rules, kilnd on the bus, and a host
left as it was."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_harness as kh  # noqa: E402

HOST_ACTIONS = '/usr/share/polkit-1/actions'
KILN_POLICY = 'org.kiln.builder1.policy'
KILN_ACTIONS = ('create', 'run', 'run-privileged', 'mount', 'manage-all')


def mount_points():
    with open('/proc/self/mountinfo') as f:
        return sorted(line.split()[4] for line in f)


def check_polkitd_on_bus(env):
    assert env.name_has_owner(kh.POLKIT_BUS_NAME), f'{kh.POLKIT_BUS_NAME} is not owned'


def check_actions_known(env):
    # Ask the polkitd on the private bus itself for its actions.
    code, out, err = env.run(['gdbus', 'call', '--system', '--dest', kh.POLKIT_BUS_NAME,
                              '--object-path', '/org/freedesktop/PolicyKit1/Authority',
                              '--method', 'org.freedesktop.PolicyKit1.Authority.EnumerateActions', ''])
    assert code == 0, f'EnumerateActions failed: {err}'
    for action in KILN_ACTIONS:
        assert f"'org.kiln.builder1.{action}'" in out, f'polkitd does not know org.kiln.builder1.{action}'


def check_test_rules_apply(env):
    # pkcheck asks that polkitd about the calling process; no session here,
    # so only the rules in tests/integration/polkit-rules can say yes.
    def allowed(user, action):
        code, _, _ = env.run(['sh', '-c', f'exec pkcheck --action-id org.kiln.builder1.{action} --process $$'],
                             user=user)
        return code == 0
    assert allowed(kh.ALICE, 'create'), f'{kh.ALICE} (group {kh.GROUP}) may not create'
    assert allowed(kh.ALICE, 'run'), f'{kh.ALICE} (group {kh.GROUP}) may not run'
    assert not allowed(kh.ALICE, 'mount'), f'{kh.ALICE} may mount without authentication'
    assert not allowed(kh.BOB, 'create'), f'{kh.BOB} (not in {kh.GROUP}) may create'


def check_users_reach_bus(env):
    code, _, err = env.run(['busctl', f'--address={env.bus_address}', 'call', 'org.freedesktop.DBus',
                            '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId'], user=kh.BOB)
    assert code == 0, f'{kh.BOB} cannot use the private bus: {err}'


def check_host_view(env, actions_before):
    # This process is in the host's mount namespace: polkitd's bind mounts
    # must not show here.
    assert sorted(os.listdir(HOST_ACTIONS)) == actions_before, f'{HOST_ACTIONS} changed on the host'


def check_kilnd_on_bus(env):
    assert env.name_has_owner(kh.KILN_BUS_NAME), f'kilnd does not own {kh.KILN_BUS_NAME}'


def check_restart(env):
    with open(os.path.join(env.dir, 'kilnd.pid')) as f:
        before = f.read().strip()
    env.restart_kilnd()
    with open(os.path.join(env.dir, 'kilnd.pid')) as f:
        after = f.read().strip()
    assert after != before, 'restart-kilnd did not start a new kilnd'
    assert env.name_has_owner(kh.KILN_BUS_NAME), f'kilnd does not own {kh.KILN_BUS_NAME} after a restart'


def main():
    kh.require_root()
    actions_before = sorted(os.listdir(HOST_ACTIONS))
    mounts_before = mount_points()
    failures = []
    with kh.Env() as env:
        for check in (check_polkitd_on_bus, check_actions_known, check_test_rules_apply,
                      check_users_reach_bus, lambda e: check_host_view(e, actions_before),
                      check_kilnd_on_bus, check_restart):
            try:
                check(env)
            except AssertionError as e:
                failures.append(str(e))
        if failures:
            env.keep = True
            env.dump_logs()

    # After stop: the host is as it was.
    if sorted(os.listdir(HOST_ACTIONS)) != actions_before:
        failures.append(f'{HOST_ACTIONS} differs after stop')
    if (KILN_POLICY in os.listdir(HOST_ACTIONS)) != (KILN_POLICY in actions_before):
        failures.append(f'{KILN_POLICY} appeared in {HOST_ACTIONS}')
    if mount_points() != mounts_before:
        failures.append('the host mount table differs after stop')

    for failure in failures:
        print(f'FAIL: {failure}', file=sys.stderr)
    if failures:
        return 1
    print('PASS: private bus, polkitd with kiln actions and test rules, kilnd; host untouched')
    return 0


if __name__ == '__main__':
    sys.exit(main())
