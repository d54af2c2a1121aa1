/* SPDX-License-Identifier: Apache-2.0 */
#include <grp.h>
#include <pwd.h>

#include <polkit/polkit.h>

#include "auth.h"
#include "errors.h"
#include "kiln-common.h"

/* Every method that needs more than ownership of its object, and the action it needs. Methods on
 * objects also require that the caller may access the object (see kiln_auth_may_access). */
static const struct {
        const char *interface;
        const char *member;
        const char *action;
} method_actions[] = {
        {KILN_MANAGER_INTERFACE, "CreateBuilder", KILN_ACTION_CREATE},
        {KILN_BUILDER_INTERFACE, "Mount", KILN_ACTION_MOUNT},
        {KILN_BUILDER_INTERFACE, "Run", KILN_ACTION_RUN},
        {KILN_BUILDER_INTERFACE, "RunCaptured", KILN_ACTION_RUN},
        {KILN_BUILDER_INTERFACE, "Start", KILN_ACTION_RUN},
};

/* What is known about one client connection. */
typedef struct {
        char *sender;
        KilnCreds creds;
        GCancellable *cancellable; /* cancelled when the client leaves */
        enum { MANAGE_ALL_UNKNOWN, MANAGE_ALL_CHECKING, MANAGE_ALL_NO, MANAGE_ALL_YES } manage_all;
} Caller;

struct KilnAuth {
        sd_bus *bus;
        sd_bus_slot *name_owner_slot;
        PolkitAuthority *authority;
        GHashTable *callers; /* unique name → Caller */
        GHashTable *checks;  /* Check set: polkit checks in flight */
        gboolean stopping;   /* kiln_auth_stop() ran: outcomes are no longer acted on */
};

static void caller_free(Caller *c)
{
        g_cancellable_cancel(c->cancellable);
        g_object_unref(c->cancellable);
        g_free(c->creds.groups);
        g_free(c->sender);
        g_free(c);
}

const char *kiln_auth_action_for(const char *interface, const char *member)
{
        for (size_t i = 0; i < G_N_ELEMENTS(method_actions); i++)
                if (g_str_equal(method_actions[i].interface, interface) &&
                    g_str_equal(method_actions[i].member, member))
                        return method_actions[i].action;
        return NULL;
}

/* A client that leaves takes its pending checks and its cached credentials with it. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        KilnAuth *auth = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] == ':' && !*new_owner)
                g_hash_table_remove(auth->callers, name);
        return 0;
}

KilnAuth *kiln_auth_new(sd_bus *bus, GError **error)
{
        g_autoptr(KilnAuth) auth = g_new0(KilnAuth, 1);
        int r;

        auth->bus = sd_bus_ref(bus);
        auth->callers = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)caller_free);
        auth->checks = g_hash_table_new(NULL, NULL);
        r = sd_bus_match_signal(bus, &auth->name_owner_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "NameOwnerChanged", on_name_owner_changed, auth);
        if (r < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-r), "Cannot watch bus clients: %s",
                            g_strerror(-r));
                return NULL;
        }
        /* polkitd is reached through GDBus on the same system bus (DBUS_SYSTEM_BUS_ADDRESS honoured). */
        auth->authority = polkit_authority_get_sync(NULL, error);
        if (!auth->authority)
                return NULL;
        return g_steal_pointer(&auth);
}

void kiln_auth_free(KilnAuth *auth)
{
        if (!auth)
                return;
        sd_bus_slot_unref(auth->name_owner_slot);
        g_hash_table_destroy(auth->callers);
        g_hash_table_destroy(auth->checks);
        g_clear_object(&auth->authority);
        sd_bus_unref(auth->bus);
        g_free(auth);
}

/* Primary gid and, when the bus daemon does not report them, groups come from the user database:
 * the caller is a host account and the bus daemon vouches for its uid. */
static void fill_groups_from_passwd(KilnCreds *creds, gboolean need_groups)
{
        struct passwd pw, *result = NULL;
        char buf[4096];
        int n = 64;

        creds->gid = (gid_t)-1;
        if (getpwuid_r(creds->uid, &pw, buf, sizeof(buf), &result) != 0 || !result)
                return;
        creds->gid = pw.pw_gid;
        if (!need_groups)
                return;
        creds->groups = g_new(gid_t, n);
        if (getgrouplist(pw.pw_name, pw.pw_gid, creds->groups, &n) < 0) {
                creds->groups = g_renew(gid_t, creds->groups, n);
                if (getgrouplist(pw.pw_name, pw.pw_gid, creds->groups, &n) < 0)
                        n = 0;
        }
        creds->n_groups = (size_t)n;
}

static Caller *caller_lookup(KilnAuth *auth, sd_bus_message *m, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *bus_creds = NULL;
        const gid_t *gids = NULL;
        Caller *c;
        uid_t uid;
        int r, n;

        if (!sender) {
                sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "The message has no sender");
                return NULL;
        }
        c = g_hash_table_lookup(auth->callers, sender);
        if (c)
                return c;

        /* Asks the bus daemon (GetConnectionCredentials): these are the credentials of the socket
         * peer, not values read from /proc that the caller could race. */
        r = sd_bus_get_name_creds(auth->bus, sender, SD_BUS_CREDS_EUID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS,
                                  &bus_creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(bus_creds, &uid);
        if (r < 0) {
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot get the credentials of %s: %s",
                                  sender, g_strerror(-r));
                return NULL;
        }
        c = g_new0(Caller, 1);
        c->sender = g_strdup(sender);
        c->cancellable = g_cancellable_new();
        c->creds.uid = uid;
        n = sd_bus_creds_get_supplementary_gids(bus_creds, &gids);
        fill_groups_from_passwd(&c->creds, n < 0);
        if (n >= 0) {
                c->creds.groups = g_memdup2(gids, sizeof(gid_t) * (size_t)n);
                c->creds.n_groups = (size_t)n;
        }
        if (c->creds.gid == (gid_t)-1)
                c->creds.gid = c->creds.n_groups > 0 ? c->creds.groups[0] : 65534;
        g_hash_table_insert(auth->callers, c->sender, c);
        return c;
}

int kiln_auth_get_caller(KilnAuth *auth, sd_bus_message *m, const KilnCreds **ret, sd_bus_error *error)
{
        Caller *c = caller_lookup(auth, m, error);

        if (!c)
                return -EACCES;
        *ret = &c->creds;
        return 0;
}

/* polkit's client cancels a check through the bus, and complains about checks that already ended
 * when a shared cancellable fires; so each check has a cancellable of its own, linked to its
 * caller's for as long as the check runs. */
typedef struct {
        GCancellable *parent;
        GCancellable *own;
        gulong handler;
} LinkedCancellable;

static void cancel_linked(GCancellable *parent, gpointer own)
{
        g_cancellable_cancel(own);
}

static void linked_init(LinkedCancellable *l, GCancellable *parent)
{
        l->parent = g_object_ref(parent);
        l->own = g_cancellable_new();
        l->handler = g_cancellable_connect(parent, G_CALLBACK(cancel_linked), l->own, NULL);
}

static void linked_clear(LinkedCancellable *l)
{
        /* Disconnecting from a cancelled cancellable blocks until its handlers ran; they ran. */
        g_cancellable_disconnect(l->parent, l->handler);
        g_clear_object(&l->parent);
        g_clear_object(&l->own);
}

typedef struct {
        KilnAuth *auth;
        sd_bus_message *message;
        LinkedCancellable cancellable;
        char *action;
        char *weakens; /* the "weakens" detail, repeated in a refusal */
        gboolean interactive;
        KilnAuthCallback callback;
        gpointer user_data;
        GDestroyNotify destroy;
} Check;

static void check_free(Check *check)
{
        g_hash_table_remove(check->auth->checks, check);
        if (check->destroy)
                check->destroy(check->user_data);
        sd_bus_message_unref(check->message);
        linked_clear(&check->cancellable);
        g_free(check->action);
        g_free(check->weakens);
        g_free(check);
}

static void on_check_done(GObject *source, GAsyncResult *res, gpointer data)
{
        Check *check = data;
        g_autoptr(GError) local = NULL;
        g_autoptr(PolkitAuthorizationResult) result = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        result = polkit_authority_check_authorization_finish(POLKIT_AUTHORITY(source), res, &local);
        if (g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CANCELLED) || check->auth->stopping) {
                /* The caller left, or kilnd is stopping: nobody to answer, nothing to start. */
                check_free(check);
                return;
        }
        if (!result) {
                g_warning("polkit check of %s failed: %s", check->action, local->message);
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Authorization check for %s failed: %s", check->action, local->message);
        } else if (!polkit_authorization_result_get_is_authorized(result)) {
                const char *sep = check->weakens ? " (the run asks for " : "";
                const char *why = check->weakens ? check->weakens : "";
                const char *end = check->weakens ? ")" : "";

                if (polkit_authorization_result_get_is_challenge(result) && !check->interactive)
                        sd_bus_error_setf(&error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                          "Interactive authentication is required for %s%s%s%s",
                                          check->action, sep, why, end);
                else
                        sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized for %s%s%s%s",
                                          check->action, sep, why, end);
        }
        check->callback(check->message, sd_bus_error_is_set(&error) ? &error : NULL, check->user_data);
        check_free(check);
}

int kiln_auth_check_method(KilnAuth *auth, sd_bus_message *m, const char *const *details,
                           KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy)
{
        const char *action = kiln_auth_action_for(sd_bus_message_get_interface(m), sd_bus_message_get_member(m));

        return kiln_auth_check(auth, m, action, details, callback, user_data, destroy);
}

int kiln_auth_check(KilnAuth *auth, sd_bus_message *m, const char *action, const char *const *details,
                    KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autoptr(PolkitSubject) subject = NULL;
        g_autoptr(PolkitDetails) polkit_details = NULL;
        Caller *caller;
        Check *check;

        caller = caller_lookup(auth, m, &error);
        if (!caller || !action || caller->creds.uid == 0) {
                callback(m, caller ? NULL : &error, user_data);
                if (destroy)
                        destroy(user_data);
                return 1;
        }

        check = g_new0(Check, 1);
        g_hash_table_add(auth->checks, check);
        check->auth = auth;
        check->message = sd_bus_message_ref(m);
        check->action = g_strdup(action);
        check->interactive = sd_bus_message_get_allow_interactive_authorization(m) > 0;
        check->callback = callback;
        check->user_data = user_data;
        check->destroy = destroy;
        linked_init(&check->cancellable, caller->cancellable);

        subject = polkit_system_bus_name_new(caller->sender);
        polkit_details = polkit_details_new();
        for (const char *const *d = details; d && d[0] && d[1]; d += 2) {
                polkit_details_insert(polkit_details, d[0], d[1]);
                if (g_str_equal(d[0], "weakens"))
                        check->weakens = g_strdup(d[1]);
        }
        polkit_authority_check_authorization(
                auth->authority, subject, action, polkit_details,
                check->interactive ? POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION
                                   : POLKIT_CHECK_AUTHORIZATION_FLAGS_NONE,
                check->cancellable.own, on_check_done, check);
        return 1;
}

void kiln_auth_stop(KilnAuth *auth)
{
        gint64 deadline = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
        GHashTableIter iter;
        gpointer check;

        auth->stopping = TRUE;
        g_hash_table_iter_init(&iter, auth->checks);
        while (g_hash_table_iter_next(&iter, &check, NULL))
                g_cancellable_cancel(((Check *)check)->cancellable.own);
        /* Each check frees itself (and the call it holds) when polkit's answer to the cancellation
         * arrives on this loop. */
        while (g_hash_table_size(auth->checks) > 0 && g_get_monotonic_time() < deadline)
                if (!g_main_context_iteration(NULL, FALSE))
                        g_usleep(1000);
}

typedef struct {
        KilnAuth *auth;
        char *sender;
        LinkedCancellable cancellable;
} ManageAllCheck;

static void on_manage_all_done(GObject *source, GAsyncResult *res, gpointer data)
{
        ManageAllCheck *mc = data;
        g_autoptr(PolkitAuthorizationResult) result = NULL;
        Caller *c;

        result = polkit_authority_check_authorization_finish(POLKIT_AUTHORITY(source), res, NULL);
        /* On cancellation the caller (and so mc->auth's entry) is gone; the lookup finds nothing. */
        c = result ? g_hash_table_lookup(mc->auth->callers, mc->sender) : NULL;
        if (c)
                c->manage_all = polkit_authorization_result_get_is_authorized(result) ? MANAGE_ALL_YES
                                                                                     : MANAGE_ALL_NO;
        linked_clear(&mc->cancellable);
        g_free(mc->sender);
        g_free(mc);
}

gboolean kiln_auth_may_access(KilnAuth *auth, sd_bus_message *m, uid_t owner)
{
        Caller *c = caller_lookup(auth, m, NULL);
        ManageAllCheck *mc;

        if (!c)
                return FALSE;
        if (c->creds.uid == 0 || c->creds.uid == owner)
                return TRUE;
        if (c->manage_all == MANAGE_ALL_UNKNOWN) {
                g_autoptr(PolkitSubject) subject = polkit_system_bus_name_new(c->sender);

                c->manage_all = MANAGE_ALL_CHECKING;
                mc = g_new0(ManageAllCheck, 1);
                mc->auth = auth;
                mc->sender = g_strdup(c->sender);
                linked_init(&mc->cancellable, c->cancellable);
                polkit_authority_check_authorization(auth->authority, subject, KILN_ACTION_MANAGE_ALL, NULL,
                                                     POLKIT_CHECK_AUTHORIZATION_FLAGS_NONE, mc->cancellable.own,
                                                     on_manage_all_done, mc);
        }
        return c->manage_all == MANAGE_ALL_YES;
}

GPtrArray *kiln_auth_watchers(KilnAuth *auth, uid_t owner)
{
        GPtrArray *senders = g_ptr_array_new_with_free_func(g_free);
        GHashTableIter iter;
        Caller *c;

        g_hash_table_iter_init(&iter, auth->callers);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&c))
                if (c->creds.uid == 0 || c->creds.uid == owner || c->manage_all == MANAGE_ALL_YES)
                        g_ptr_array_add(senders, g_strdup(c->sender));
        return senders;
}

GCancellable *kiln_auth_caller_cancellable(KilnAuth *auth, sd_bus_message *m)
{
        Caller *c = caller_lookup(auth, m, NULL);

        return c ? g_object_ref(c->cancellable) : g_cancellable_new();
}

void kiln_auth_track_caller(KilnAuth *auth, sd_bus_message *m)
{
        (void)caller_lookup(auth, m, NULL);
}
