/* SPDX-License-Identifier: Apache-2.0 */
/* Authorization in one place: who is calling (from the bus daemon's credentials, never from
 * /proc), which polkit action each method needs (one table), asynchronous polkit checks with the
 * caller's bus name as subject, and who may see which builder. Checks in progress are bounded per
 * uid and in all ([Limits] AuthorizationsPerUser, MaxAuthorizations) and in time
 * (AuthorizationTimeoutSeconds, InteractiveAuthorizationTimeoutSeconds); a polkitd that goes away
 * while asked is asked again once, when the next one owns its name. */
#pragma once

#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "base/config.h"
#include "storage/storage.h"

#define KILN_ACTION_CREATE "org.kiln.builder1.create"
#define KILN_ACTION_RUN "org.kiln.builder1.run"
#define KILN_ACTION_RUN_PRIVILEGED "org.kiln.builder1.run-privileged"
#define KILN_ACTION_MOUNT "org.kiln.builder1.mount"
#define KILN_ACTION_MANAGE_ALL "org.kiln.builder1.manage-all"

typedef struct KilnAuth KilnAuth;

/* @config (the limits) must outlive the KilnAuth. */
KilnAuth *kiln_auth_new(sd_bus *bus, const KilnConfig *config, GError **error);
void kiln_auth_free(KilnAuth *auth);
/* At shutdown, before what the callbacks use goes away: every pending check lets go of the call it
 * holds at once (no callback, only its destroy notify), and the questions to polkitd are ended (up to
 * 2 s). */
void kiln_auth_stop(KilnAuth *auth);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnAuth, kiln_auth_free)

/* The sender's credentials, cached per unique name until it leaves the bus. The pointer stays valid
 * while the message is being handled. */
int kiln_auth_get_caller(KilnAuth *auth, sd_bus_message *m, const KilnCreds **ret, sd_bus_error *error);

/* Called exactly once with the outcome; @error is set when the caller is not authorized. */
typedef void (*KilnAuthCallback)(sd_bus_message *m, const sd_bus_error *error, gpointer user_data);

/* Checks the polkit action that the method table assigns to @m's member (uid 0 is always allowed;
 * a method without an action is allowed). @details: NULL-terminated key, value pairs shown in the
 * authentication dialog. The check is dropped if the caller leaves the bus; then @callback is not
 * called but @destroy is (at once: not when polkitd answers). Past the limits @callback gets
 * LimitExceeded at once; a polkitd that does not answer in time, or cannot be reached, gives Busy;
 * only polkit's own refusal gives AccessDenied or InteractiveAuthorizationRequired. Returns 1: the
 * message is taken (an sd-bus method handler that returns 0 tells sd-bus to look for another
 * handler, which then answers UnknownMethod). */
int kiln_auth_check_method(KilnAuth *auth, sd_bus_message *m, const char *const *details,
                           KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy);
/* The same for an action the method decides itself (Run: run or run-privileged, on what is asked). */
int kiln_auth_check(KilnAuth *auth, sd_bus_message *m, const char *action, const char *const *details,
                    KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy);

/* Whether the sender of @m may see and act on an object owned by @owner: uid 0, the owner, or a caller
 * holding manage-all. Synchronous: manage-all is looked up in a per-caller cache that a non-interactive
 * asynchronous check fills (started here the first time), so a manage-all holder's very first
 * lookup may see only its own builders. */
gboolean kiln_auth_may_access(KilnAuth *auth, sd_bus_message *m, uid_t owner);

/* Remembers the sender of @m as a client that gets signals about the objects it may see (any call to
 * kilnd does this; listing calls do it explicitly, since with nothing to list nothing else would). */
void kiln_auth_track_caller(KilnAuth *auth, sd_bus_message *m);

/* The unique names of connected clients that have called kilnd and may access objects of @owner:
 * signals about an object are sent to them alone, so a builder's name and configuration never
 * reach other users through broadcast signals. */
GPtrArray *kiln_auth_watchers(KilnAuth *auth, uid_t owner);

/* Cancelled when the sender of @m leaves the bus (a new reference). */
GCancellable *kiln_auth_caller_cancellable(KilnAuth *auth, sd_bus_message *m);

/* The action of a method, or NULL: exposed for tests. */
const char *kiln_auth_action_for(const char *interface, const char *member);
