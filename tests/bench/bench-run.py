#!/usr/bin/env python3
"""Benchmark of Run (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-run.py [--repeat 21] [--leak-runs 1000] [--user kiln-alice] [--no-buildah]
                             [--other-build DIR]

In one run, on the same busybox root file system, prints the median wall time of
  - `kiln run B /bin/true` (the CLI, through kilnd, runc), as root and, with --user, as that user
    (a builder of the user's own: a user namespace, kiln-runtime-ns);
  - `kiln run --isolation chroot B /bin/true` (kiln-isolate), as root and as the user;
  - `buildah run --isolation oci --runtime runc` of a scratch container holding the same files
    (buildah from Debian, vfs storage in a private directory; not with --no-buildah);
  - a bare `runc run` of the bundle kilnd generated for the same command (what a user would type);
  - a bare `runc create`, `start`, wait, `delete` of the same bundle
    (same config.json, same generated files, the same overlay root kept mounted with `kiln mount`),
    the sequence kilnd drove before it used `run --detach`, with this script as the child subreaper
    that reaps the container's process as kilnd does;
  - a bare `unshare --mount --pid --fork --uts --ipc --net chroot ROOTFS /bin/true`;
  - with --user, what that user could run instead without kiln: a rootless `runc run` of a bundle from
    `runc spec --rootless` (its own state root; /bin/true, no terminal, the same ROOTFS) and
    `unshare --user --map-root-user --mount --pid --fork --uts --ipc --net chroot ROOTFS /bin/true`;
all interleaved (so that drift hits every row alike), and the ratios against issue 16's goals (oci at
most 1.15x the bare `runc run`, chroot at most 2.5x the bare unshare); a user's kiln rows against both
root's bare command and the user's own, labelled. With --other-build, the kiln rows
also for a second build (its own bus, polkitd and kilnd), interleaved with this one's: before and after
measured in the same time window. Then kilnd's RSS after 10 runs and after --leak-runs runs (0: not).
The user's runs are started with setuid/setgid from this script, not through runuser, so that both
pay the same client start-up. Each command starts --gap seconds (default 0.1) after the one before: on
cgroup v1 a process moved into a cgroup by another waits for an RCU grace period (~10 ms here) unless
such a move happened a moment before, so back to back a command's cost depended on the command before
it (docs/performance.md). Run as root from the source tree after a build.
"""
import argparse
import ctypes
import glob
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, buildah_container, median_ms, rss_kib, timed  # noqa: E402


PR_SET_CHILD_SUBREAPER = 36


def bare_runc(runc_root, bundle, name):
    """create, start, wait for the container's process, delete: what kilnd did, with nothing around it."""
    pid_file = os.path.join(bundle, f'{name}.pid')
    start = time.perf_counter()
    subprocess.run(['runc', '--root', runc_root, 'create', '--bundle', bundle, '--pid-file', pid_file, '--', name],
                   check=True, stdout=subprocess.DEVNULL)
    with open(pid_file) as f:
        pid = int(f.read())
    subprocess.run(['runc', '--root', runc_root, 'start', '--', name], check=True)
    os.waitpid(pid, 0)
    subprocess.run(['runc', '--root', runc_root, 'delete', '--force', '--', name], check=True)
    elapsed = time.perf_counter() - start
    os.unlink(pid_file)
    return elapsed


def bare_runc_run(runc_root, bundle, name):
    """`runc run`: what a user would type instead of kiln, one execution of runc."""
    start = time.perf_counter()
    subprocess.run(['runc', '--root', runc_root, 'run', '--bundle', bundle, '--', name], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bare_bundle(env, kiln, builder, work):
    """Copies the bundle kilnd writes for `sleep 30` and makes it run /bin/true."""
    proc = subprocess.Popen([kiln, 'run', builder, '--', 'sleep', '30'])
    bundles = os.path.join(env.dir, 'run', 'bundles')
    for _ in range(200):
        found = glob.glob(os.path.join(bundles, '*', 'config.json'))
        if found:
            break
        time.sleep(0.05)
    bundle = os.path.dirname(found[0])
    dest = os.path.join(work, 'bare-bundle')
    shutil.copytree(bundle, dest)
    proc.terminate()
    proc.wait()
    with open(os.path.join(dest, 'config.json')) as f:
        spec = json.load(f)
    spec['process']['args'] = ['/bin/true']
    spec['process']['terminal'] = False
    for mount in spec.get('mounts', []):
        if mount.get('source', '').startswith(bundle):
            mount['source'] = dest + mount['source'][len(bundle):]
    with open(os.path.join(dest, 'config.json'), 'w') as f:
        json.dump(spec, f)
    return dest


def rootless_bundle(rootfs, work, user):
    """A `runc spec --rootless` bundle, made by @user, that runs /bin/true on @rootfs: the rootless runc
    a user would type. Returns (bundle, the user's runc state root)."""
    bundle = os.path.join(work, 'rootless-bundle')
    os.mkdir(bundle)
    pw = pwd.getpwnam(user)
    os.chown(bundle, pw.pw_uid, pw.pw_gid)
    subprocess.run(['runc', 'spec', '--rootless'], cwd=bundle, check=True, **user_kwargs(user))
    path = os.path.join(bundle, 'config.json')
    with open(path) as f:
        spec = json.load(f)
    spec['root'] = {'path': rootfs, 'readonly': True}
    spec['process']['args'] = ['/bin/true']
    spec['process']['terminal'] = False
    with open(path, 'w') as f:
        json.dump(spec, f)
    return bundle, os.path.join(bundle, 'state')


GOAL_OCI = 1.15
GOAL_CHROOT = 2.5


def user_kwargs(user):
    """subprocess arguments that run a command as @user (uid, gid, supplementary groups)."""
    if not user:
        return {}
    pw = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    return {'user': pw.pw_uid, 'group': pw.pw_gid, 'extra_groups': groups}


class Build:
    """One build's environment (bus, polkitd, kilnd) and its builders."""

    def __init__(self, label, build_root, rootfs, user):
        self.label = label
        self.env = kh.Env()
        self.env.build_root = build_root
        self.env.kiln_cli = self.kiln = os.path.join(build_root, 'cli', 'kiln')
        self.env.kilnd = os.path.join(build_root, 'service', 'kilnd')
        self.env.setup()
        self.vars = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        self.commands = {}
        for isolation in ('oci', 'chroot'):
            for who in (None, user) if user else (None,):
                name = f'{isolation}-{who or "root"}'
                kwargs = dict(user_kwargs(who), env=self.vars)
                subprocess.run([self.kiln, 'from', '--name', name, '--isolation', isolation, rootfs],
                               check=True, stdout=subprocess.DEVNULL, **kwargs)
                self.commands[f'{label} {isolation} {who or "root"}'] = (
                    [self.kiln, 'run', name, '/bin/true'], kwargs)

    def stop(self):
        self.env.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=21)
    parser.add_argument('--leak-runs', type=int, default=1000)
    parser.add_argument('--user', help='also run as this user (e.g. kiln-alice, in group kiln)')
    parser.add_argument('--no-buildah', action='store_true')
    parser.add_argument('--other-build', help='a second build directory, measured interleaved')
    parser.add_argument('--gap', type=float, default=0.1, help='seconds of quiet before each command')
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    if args.other_build:
        print(f'other build: {build_description(args.other_build)}')
    print(f'load average at the start: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
    # The bare sequence reaps the container's process itself, as kilnd does.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if not args.no_buildah and not shutil.which('buildah'):
        sys.exit('buildah is not installed (apt-get install buildah)')

    builds = []
    with tempfile.TemporaryDirectory(prefix='kiln-bench-') as work:
        os.chmod(work, 0o755)
        rootfs = os.path.join(work, 'rootfs')
        kh.make_busybox_rootfs(rootfs)
        os.chmod(os.path.join(rootfs, 'root'), 0o755)  # kiln-import reads the base as the caller
        try:
            this = Build('kiln', kh.BUILD_ROOT, rootfs, args.user)
            builds.append(this)
            if args.other_build:
                builds.append(Build('other', args.other_build, rootfs, args.user))
            env, kiln = this.env, this.kiln
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = env.bus_address
            subprocess.run([kiln, 'mount', 'oci-root'], check=True, stdout=subprocess.DEVNULL)
            bundle = bare_bundle(env, kiln, 'oci-root', work)
            runc_root = os.path.join(work, 'runc-root')
            commands = {}
            for b in builds:
                commands.update(b.commands)
            unshare_cmd = ['unshare', '--mount', '--pid', '--fork', '--uts', '--ipc', '--net', 'chroot', rootfs,
                       '/bin/true']
            commands['bare unshare chroot'] = (unshare_cmd, {})
            if args.user:
                user_bundle, user_root = rootless_bundle(rootfs, work, args.user)
                rootless = ['runc', '--root', user_root, 'run', '--bundle', user_bundle, '--']
                commands[f'bare rootless runc run {args.user}'] = (rootless, user_kwargs(args.user))
                commands[f'bare unshare --user chroot {args.user}'] = (
                    [unshare_cmd[0], '--user', '--map-root-user', *unshare_cmd[1:]], user_kwargs(args.user))
            storage = ctr = None
            if not args.no_buildah:
                storage, ctr = buildah_container(rootfs, work)
                commands['buildah oci root'] = (['buildah', *storage, 'run', '--isolation', 'oci', '--runtime',
                                                 'runc', ctr, '/bin/true'], {})

            # Warm every path once, then interleave so drift hits all alike.
            samples = {name: [] for name in commands}
            samples['bare runc run'] = []
            samples['bare runc create/start/delete'] = []
            for i in range(args.repeat + 1):
                for name, (cmd, kwargs) in commands.items():
                    if name.startswith('bare rootless runc run'):
                        cmd = cmd + [f'rootless-{i}']
                    time.sleep(args.gap)
                    t = timed(cmd, **kwargs)
                    if i:
                        samples[name].append(t)
                time.sleep(args.gap)
                u = bare_runc_run(runc_root, bundle, f'bare-run-{i}')
                time.sleep(args.gap)
                r = bare_runc(runc_root, bundle, f'bare-{i}')
                if i:
                    samples['bare runc run'].append(u)
                    samples['bare runc create/start/delete'].append(r)
            medians = {name: median_ms(v) for name, v in samples.items()}
            print(f'load average at the end: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
            print(f'median of {args.repeat} interleaved runs of /bin/true:')
            for name, m in medians.items():
                print(f'  {name:34s} {m:7.1f} ms')
            run, unshare = medians['bare runc run'], medians['bare unshare chroot']
            own_run = medians.get(f'bare rootless runc run {args.user}')
            own_unshare = medians.get(f'bare unshare --user chroot {args.user}')
            for name, m in medians.items():
                if ' oci ' in name and not name.startswith('buildah'):
                    print(f'  {name} / bare runc run (root) = {m / run:.2f}x (goal <= {GOAL_OCI}x)'
                          f'; / bare create/start/delete = {m / medians["bare runc create/start/delete"]:.2f}x')
                    if args.user and name.endswith(f' {args.user}'):
                        print(f'  {name} / bare rootless runc run {args.user} = {m / own_run:.2f}x')
                elif ' chroot ' in name and not name.startswith('bare'):
                    print(f'  {name} / bare unshare chroot (root) = {m / unshare:.2f}x (goal <= {GOAL_CHROOT}x)')
                    if args.user and name.endswith(f' {args.user}'):
                        print(f'  {name} / bare unshare --user chroot {args.user} = {m / own_unshare:.2f}x')
            if ctr:
                print(f'  buildah / kiln oci root = {medians["buildah oci root"] / medians["kiln oci root"]:.2f}x')
                subprocess.run(['buildah', *storage, 'rm', ctr], stdout=subprocess.DEVNULL)
            if args.leak_runs > 0:
                leak(this, args.leak_runs)
        finally:
            for b in builds:
                b.stop()


def leak(build, runs):
    """kilnd's RSS after 10 runs and after @runs runs."""
    env, kiln = build.env, build.kiln
    # Exited Process objects linger (60 s by default) so late Wait calls answer; for the memory
    # figure they must go soon, or 1,000 lingering objects would be counted as growth. Not at
    # once: a command that exits before the CLI's Wait would find no object.
    with open(os.path.join(env.dir, 'kiln.conf.extra'), 'w') as f:
        f.write('[Process]\nLingerSeconds=2\n')
    subprocess.run([kiln, 'umount', 'oci-root'], check=True, env=build.vars)
    env.restart_kilnd()
    with open(os.path.join(env.dir, 'kilnd.pid')) as f:
        pid = int(f.read())
    time.sleep(1)
    idle = rss_kib(pid)
    for _ in range(10):
        timed([kiln, 'run', 'oci-root', '/bin/true'], env=build.vars)
    time.sleep(1)
    after_10 = rss_kib(pid)
    for _ in range(max(runs - 10, 0)):
        timed([kiln, 'run', 'oci-root', '/bin/true'], env=build.vars)
    time.sleep(3)  # the last lingering objects gone
    after_n = rss_kib(pid)
    print(f'kilnd RSS idle: {idle / 1024:.1f} MiB; after 10 runs: {after_10 / 1024:.1f} MiB; after {runs}: '
          f'{after_n / 1024:.1f} MiB')


if __name__ == '__main__':
    main()
