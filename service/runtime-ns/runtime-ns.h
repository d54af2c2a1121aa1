/* SPDX-License-Identifier: Apache-2.0 */
/* The intermediate mount namespace of a run in a user namespace (kiln-runtime-ns.c says why): entered
 * by the kiln-runtime-ns program before it executes the runtime, and by kiln-isolate's server in the
 * child it forks for such a run (isolate/serve.c). One implementation for both. Plain C, no GLib: the
 * program links nothing of kiln. */
#pragma once

#define KILN_RUNTIME_NS_MAX_KEEP 8

/* Whether the runtime command line @argv (NULL-terminated) makes a container (create, run): only those
 * set up mounts and need the namespace; the others go straight through. */
int kiln_runtime_ns_makes_container(const char *const *argv);

/* Moves the calling process into a new mount namespace, slave to the current one, where a fresh tmpfs
 * covers @cover and only the @n_keep directories @keep (each strictly below @cover) are put back at
 * their paths, through 0755 directories. Sets the umask to 0022 (for those directories, and for the
 * runtime that follows: kilnd's 0077 would shut the mapped root out). Returns 0, or -1 with errno set
 * and *@what, *@path naming the step that failed (then the namespace may be half made: the caller
 * exits). */
int kiln_runtime_ns_enter(const char *cover, const char *const *keep, int n_keep, const char **what,
                          const char **path);
