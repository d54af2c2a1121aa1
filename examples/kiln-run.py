#!/usr/bin/python3
"""A desktop tool's use of kilnd through libkiln-1 (PyGObject), no D-Bus by hand:

    examples/kiln-run.py ROOTFS COMMAND [ARG...]

creates a builder from the root file system directory ROOTFS (opened here, as the caller, and
passed as a descriptor), runs COMMAND in it with its output live on this program's own stdout and
stderr (the descriptors are passed, kilnd relays nothing), waits for it, removes the builder, and
exits with the command's status. Needs org.kiln.builder1.create and org.kiln.builder1.run.
"""
import os
import sys

import gi

gi.require_version('Kiln', '1')
from gi.repository import Gio, GLib, Kiln  # noqa: E402

BUS_NAME = 'org.kiln.Builder1'


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rootfs, command = os.path.abspath(argv[1]), argv[2:]
    manager = Kiln.ManagerProxy.new_for_bus_sync(Gio.BusType.SYSTEM, Gio.DBusProxyFlags.NONE, BUS_NAME,
                                                 '/org/kiln/Builder1', None)

    fds = Gio.UnixFDList()
    rootfs_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    options = {'rootfs_fd': GLib.Variant('h', fds.append(rootfs_fd))}
    os.close(rootfs_fd)
    path, _ = manager.call_create_builder_sync('', rootfs, GLib.Variant('a{sv}', options), fds, None)
    builder = Kiln.BuilderProxy.new_for_bus_sync(Gio.BusType.SYSTEM, Gio.DBusProxyFlags.NONE, BUS_NAME, path,
                                                 None)
    print(f'builder {builder.props.name} ({builder.props.id[:12]})', file=sys.stderr)
    try:
        fds = Gio.UnixFDList()
        options = {'stdout': GLib.Variant('h', fds.append(sys.stdout.fileno())),
                   'stderr': GLib.Variant('h', fds.append(sys.stderr.fileno()))}
        process_path, _ = builder.call_start_sync(command, GLib.Variant('a{sv}', options), fds, None)
        process = Kiln.ProcessProxy.new_for_bus_sync(Gio.BusType.SYSTEM, Gio.DBusProxyFlags.NONE, BUS_NAME,
                                                     process_path, None)
        # Wait answers when the command exits; it may run for long.
        process.set_default_timeout(GLib.MAXINT)
        status = process.call_wait_sync(None)
    finally:
        builder.call_remove_sync(GLib.Variant('a{sv}', {'force': GLib.Variant('b', True)}), None)
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv))
