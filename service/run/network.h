/* SPDX-License-Identifier: Apache-2.0 */
/* User-mode networks for runs (network=pasta, network=slirp4netns), decoupled from the runtime's own
 * sequence (docs/network.md):
 *
 *   1. kiln_network_new(), while the run is prepared: a forked child, as the builder's owner, makes a user
 *      namespace and a network namespace in it; kilnd binds both into the run's bundle (netns-user,
 *      netns-net) and the spec joins the network namespace by that path (runc and kiln-isolate alike). The
 *      spec's first createRuntime hook is kiln_network_gate_hook(): kiln-net-gate, waiting on a FIFO in the
 *      bundle (network-gate).
 *   2. kiln_network_start(), right after the runtime's spawn: the helper is spawned, as the owner too,
 *      attached to those namespaces through inherited descriptors, so that its start-up and the runtime's
 *      overlap. kilnd watches it in the main loop — ready when the namespace is configured
 *      (pasta: the last default route it copies appears there, watched through rtnetlink; else its pid
 *      file; slirp4netns: its ready descriptor), failed when it exits first or takes longer than [Network]
 *      HelperTimeoutSeconds from its spawn — and tells the gate, which lets the runtime exec the command or
 *      fails the runtime's start; the run's error is then the helper's (kiln_network_failure()).
 *   3. kiln_network_free(), with the run: the helper killed (SIGKILL; reaped by GLib's child watch, not
 *      waited for), the gate closed (a gate still waiting fails), the namespaces unmounted.
 *
 * kiln_network_cleanup_stale() kills, at start-up, helpers a crashed kilnd left (the bundle records each
 * helper's pid and start time); the storage's clean-up then unmounts the namespaces with the bundles. */
#pragma once

#include <sys/types.h>

#include <gio/gio.h>

#include "base/config.h"
#include "spec/spec.h"

typedef struct KilnNetwork KilnNetwork;

/* At start-up: [Network] Default= when given, else pasta when its program is found, else private. */
void kiln_network_detect_default(KilnConfig *config);

/* The network of a run: the run's option, else the builder's setting, else kiln.conf's default. */
const char *kiln_network_effective(const KilnConfig *config, const char *run_value,
                                   const char *builder_value);

/* Whether @network is one kilnd starts a helper for (pasta, slirp4netns). */
gboolean kiln_network_needs_helper(const char *network);

/* Checks of caller strings (InvalidArgument naming @arg): a network (private, none, host, ns:PATH, pasta,
 * slirp4netns), a nameserver (an IP address, or "none"), a search domain, a resolver option, an
 * add_host entry (NAME:IP), a network option (KEY or KEY=VALUE; which keys, is decided with the network
 * by kiln_network_new()). */
gboolean kiln_network_validate_mode(const char *arg, const char *value, GError **error);
gboolean kiln_network_validate_dns(const char *arg, const char *value, GError **error);
gboolean kiln_network_validate_dns_search(const char *arg, const char *value, GError **error);
gboolean kiln_network_validate_dns_option(const char *arg, const char *value, GError **error);
gboolean kiln_network_validate_add_host(const char *arg, const char *value, GError **error);
gboolean kiln_network_validate_option(const char *arg, const char *value, GError **error);

/* Makes the namespaces of a run in @bundle for @network (pasta or slirp4netns) owned by @uid:@gid, and the
 * gate's FIFO, after checking @options against the helper's allow-list and finding the helper's program. A
 * missing program is RuntimeFailed naming the Debian package. */
KilnNetwork *kiln_network_new(const KilnConfig *config, const char *network, char **options, uid_t uid,
                              gid_t gid, const char *bundle, GError **error);
/* The bound network namespace, for the spec. */
const char *kiln_network_netns_path(const KilnNetwork *network);
/* The address the container reaches the host's loopback at, for /etc/hosts (NULL: none). */
const char *kiln_network_host_address(const KilnNetwork *network);
/* The nameserver the helper itself answers at (slirp4netns: 10.0.2.3; NULL: the host's are used). */
const char *kiln_network_nameserver(const KilnNetwork *network);

/* The run's first createRuntime hook (before hooks.d's and CDI's, so that they see the network too):
 * kiln-net-gate in kilnd's helper directory, waiting for kilnd's word on the bundle's FIFO. Its strings
 * are @network's. */
void kiln_network_gate_hook(KilnNetwork *network, KilnHook *hook);

/* Spawns the helper; called right after the runtime's spawn. Readiness is decided (and told to the gate) in
 * the main loop; a helper that cannot be spawned fails the gate at once (kiln_network_failure()).
 * Cancelling @cancellable (the caller left) stops a helper that is not ready yet, which fails the gate. */
void kiln_network_start(KilnNetwork *network, GCancellable *cancellable);

/* When the helper failed (the gate was told so): the run's error, RuntimeFailed naming the helper and its
 * Debian package, with what it said. A runtime whose start fails after this failed because of it. NULL
 * while undecided or ready. */
const GError *kiln_network_failure(const KilnNetwork *network);

/* Kills the helper (its reaping is left to GLib: after SIGKILL it runs no code of its own), unmounts and
 * removes the namespaces' files. A start in progress is dropped: its @ready is never called. */
void kiln_network_free(KilnNetwork *network);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnNetwork, kiln_network_free)

/* At start-up, before the bundles are cleaned up: kills the helpers recorded in @bundles_dir that are still
 * the processes that were started. */
void kiln_network_cleanup_stale(const char *bundles_dir);
