#!/usr/bin/env python3
"""Starts a private dbus-daemon whose configuration includes our bus policy.

usage: check-bus-policy.py BUS_CONF

dbus-daemon refuses to start when an <include>d file does not parse or uses
an element or attribute wrongly, so a bus that starts proves the policy is
accepted. As root it also checks the policy's effect: root may own
org.kiln.Builder1, an unprivileged user (uid 65534) may not.
"""
import os
import select
import shutil
import subprocess
import sys
import tempfile

NAME = 'org.kiln.Builder1'
NOBODY = 65534

# The system bus's default policy, in short: deny owning and method calls
# unless a policy file punches a hole. Our file must punch exactly its own.
CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
    <type>system</type>
    <listen>unix:path={socket}</listen>
    <auth>EXTERNAL</auth>
    <policy context="default">
        <allow user="*"/>
        <deny own="*"/>
        <deny send_type="method_call"/>
        <allow send_type="signal"/>
        <allow send_requested_reply="true" send_type="method_return"/>
        <allow send_requested_reply="true" send_type="error"/>
        <allow receive_type="method_call"/>
        <allow receive_type="method_return"/>
        <allow receive_type="error"/>
        <allow receive_type="signal"/>
        <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    </policy>
    <include>{policy}</include>
</busconfig>
'''


def start_bus(workdir, policy):
    """Starts dbus-daemon and returns (process, address); exits 1 if it does not start."""
    config = os.path.join(workdir, 'bus.conf')
    with open(config, 'w') as f:
        f.write(CONFIG.format(socket=os.path.join(workdir, 'bus.sock'), policy=policy))
    bus = subprocess.Popen(['dbus-daemon', f'--config-file={config}', '--nofork', '--print-address'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([bus.stdout], [], [], 10)
    address = bus.stdout.readline().strip() if ready else ''
    if not address:
        bus.kill()
        _, err = bus.communicate()
        print(f'FAIL: dbus-daemon did not start with {policy}:\n{err}', file=sys.stderr)
        sys.exit(1)
    return bus, address


def request_name(address, uid):
    """RequestName as @uid; returns (exit code, output)."""
    cmd = ['busctl', f'--address={address}', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
           'org.freedesktop.DBus', 'RequestName', 'su', NAME, '4']
    if uid != 0:
        cmd = ['setpriv', f'--reuid={uid}', f'--regid={uid}', '--clear-groups', '--'] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def check_ownership(address):
    """Returns a list of problems with who may own the name."""
    problems = []
    code, output = request_name(address, 0)
    # 1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
    if code != 0 or output.strip() != 'u 1':
        problems.append(f'root could not own {NAME}: {output.strip()}')
    code, output = request_name(address, NOBODY)
    if code == 0 or 'denied' not in output.lower():
        problems.append(f'uid {NOBODY} was not denied owning {NAME}: {output.strip()}')
    return problems


def main():
    policy = os.path.abspath(sys.argv[1])
    if not shutil.which('dbus-daemon'):
        print('SKIP: dbus-daemon not installed')
        return 77
    workdir = tempfile.mkdtemp(prefix='kiln-bus-test.')
    os.chmod(workdir, 0o755)  # uid 65534 must reach the socket
    bus, address = start_bus(workdir, policy)
    try:
        problems = []
        if os.geteuid() == 0 and shutil.which('busctl') and shutil.which('setpriv'):
            problems = check_ownership(address)
        else:
            print('note: not root (or no busctl/setpriv): ownership not checked')
    finally:
        bus.terminate()
        bus.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print(f'FAIL: {problem}', file=sys.stderr)
    if problems:
        return 1
    print(f'PASS: dbus-daemon accepts {policy}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
