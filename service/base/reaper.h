/* SPDX-License-Identifier: Apache-2.0 */
/* Reaping the orphans kilnd adopts as a child subreaper (a run's background processes, what a failed or
 * killed runtime command leaves), without stealing an exit status that someone in kilnd waits for.
 *
 * Every waiter in kilnd claims its pid here before the process can have exited unseen: GSubprocesses
 * (reaped by GLib's child watch) through kiln_reaper_claim_subprocess() right after the spawn, container
 * processes through kiln_reaper_claim() when their watch starts. A process that re-parents to kilnd before
 * anyone can know its pid (the container's process between the runtime's `create` exiting and its pid file
 * being read) is covered by a hold: while any hold is taken, nothing is reaped. Only a zombie child that is
 * neither claimed nor held is reaped, by pid. Everything here runs on the main thread (docs/decisions.md,
 * "Reaping adopted processes"). */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>

/* Starts reaping on the default main context (main.c, once kilnd is a child subreaper). */
void kiln_reaper_start(void);

void kiln_reaper_claim(pid_t pid);
void kiln_reaper_unclaim(pid_t pid);
/* Claims @process's pid until the object is finalized (GSubprocess keeps itself alive until GLib reaped
 * its child, so by then the pid is no longer ours). */
void kiln_reaper_claim_subprocess(GSubprocess *process);

/* Nothing is reaped between a hold and its release. */
void kiln_reaper_hold(void);
void kiln_reaper_release(void);

/* Calls @func for each child of kilnd that nobody claimed (an adopted orphan, alive or a zombie): its pid
 * stays valid until the reaper reaps it, which does not happen during the call. */
void kiln_reaper_foreach_orphan(void (*func)(pid_t pid, gpointer data), gpointer data);

/* Look for zombies soon, e.g. after killing what a failed create left. */
void kiln_reaper_kick(void);
