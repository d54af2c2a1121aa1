/* SPDX-License-Identifier: Apache-2.0 */
/* kilnd's descriptor limit: raised for kilnd itself, as it was for what kilnd executes.
 *
 * Each running process costs kilnd a dozen descriptors and more (the caller's stdio, relays, pidfds), so
 * the soft RLIMIT_NOFILE systemd leaves by default (1024, for select()'s sake) runs out long before
 * ProcessesPerUser of a few users. kilnd polls with GLib (poll(), never select()), so it raises its soft
 * limit to the hard one (LimitNOFILE= in the unit) at start-up. Programs it executes — runtimes, their
 * containers, kiln-isolate, kiln-import — get the soft limit kilnd was started with, as systemd does for
 * its own children: some still use select(), and a container's defaults must not depend on kilnd's needs. */
#pragma once

#include <gio/gio.h>

/* Raises the soft limit to the hard limit; remembers the original for children. Call once, early. */
void kiln_fd_limit_raise(void);

/* A GSpawnChildSetupFunc: restores the original soft limit in the child, between fork and exec. It makes
 * one system call (setrlimit), which takes no lock and allocates nothing, so it is safe in the child of a
 * multi-threaded process. @data is unused. */
void kiln_fd_limit_child_setup(gpointer data);

/* Sets kiln_fd_limit_child_setup on @launcher: every GSubprocessLauncher of kilnd goes through this. */
void kiln_fd_limit_apply(GSubprocessLauncher *launcher);
