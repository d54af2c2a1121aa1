/* SPDX-License-Identifier: Apache-2.0 */
#include <grp.h>
#include <pwd.h>

#include "base/audit.h"
#include "authz/auth.h"
#include "base/errors.h"
#include "base/kiln-common.h"

/* polkitd's D-Bus interface, asked directly rather than through libpolkit's client: kilnd has to know
 * when polkitd has really answered (each question holds a pending reply on kilnd's bus connection
 * until then, see KilnAuth.checks), to cancel only what is still being asked, and to ask a restarted
 * polkitd again. */
#define POLKIT_BUS_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_AUTHORITY_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_AUTHORITY_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_FLAG_ALLOW_USER_INTERACTION 1u

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
        {KILN_BUILDER_INTERFACE, "Copy", KILN_ACTION_RUN},
        {KILN_BUILDER_INTERFACE, "CopyOut", KILN_ACTION_RUN},
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
        const KilnConfig *config;
        GDBusConnection *polkit_bus; /* polkitd is asked through GDBus on the system bus */
        guint polkit_watch;
        char *polkit_owner;  /* unique name owning org.freedesktop.PolicyKit1; NULL: none (yet) */
        GCancellable *stop;  /* cancelled by kiln_auth_stop: every question to polkitd ends at once */
        GHashTable *callers; /* unique name → Caller */
        /* Check set: every question polkitd has not answered yet, whether or not anyone still waits
         * for the answer (the bus counts its pending reply until polkitd answers or goes away), and
         * those waiting for a restarted polkitd. */
        GHashTable *checks;
        GHashTable *checks_per_uid; /* uid → how many of those are about that uid's calls */
        guint64 next_cancellation_id;
        gboolean stopping; /* kiln_auth_stop() ran: outcomes are no longer acted on */
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

/* One question to polkitd and whoever waits for its answer: a method call, or the background manage-all
 * lookup of a caller. The question and the waiting end separately: a caller that leaves or times out is
 * answered (or forgotten) at once, but the Check stays, holding its place in the limits, until polkitd's
 * reply has come back. */
typedef struct {
        KilnAuth *auth;
        uid_t uid;
        char *sender; /* the subject: the caller's unique bus name, never a pid */
        char *action;
        char *weakens;     /* the "weakens" detail, repeated in a refusal */
        GVariant *details; /* a{ss} */
        gboolean interactive;
        char *cancellation_id; /* interactive checks only: they may have a password dialog to close */
        char *asked_owner;     /* who owned polkit's name when the question was sent */
        gboolean in_flight;    /* CheckAuthorization sent, its reply not back yet */
        gboolean retried;      /* asked a second time already (polkitd went away) */
        gboolean retry_when_polkitd_appears;
        gboolean answered; /* polkitd decided (yes, no, or a challenge) */
        guint timeout_source;

        gboolean waiting; /* someone still waits for the outcome */
        gboolean manage_all;
        sd_bus_message *message;
        KilnAuthCallback callback;
        gpointer user_data;
        GDestroyNotify destroy;
} Check;

static void check_free(Check *check)
{
        KilnAuth *auth = check->auth;
        gpointer key = GUINT_TO_POINTER(check->uid);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(auth->checks_per_uid, key));

        g_warn_if_fail(!check->waiting && !check->in_flight);
        g_hash_table_remove(auth->checks, check);
        if (n > 1)
                g_hash_table_insert(auth->checks_per_uid, key, GUINT_TO_POINTER(n - 1));
        else
                g_hash_table_remove(auth->checks_per_uid, key);
        g_clear_handle_id(&check->timeout_source, g_source_remove);
        g_variant_unref(check->details);
        g_free(check->sender);
        g_free(check->action);
        g_free(check->weakens);
        g_free(check->cancellation_id);
        g_free(check->asked_owner);
        g_free(check);
}

/* Ends the waiting: @error NULL means authorized. With @deliver FALSE (the caller left, kilnd stops)
 * nobody is told, but what the waiter holds is let go all the same. Once per check. */
static void check_finish(Check *check, const sd_bus_error *error, gboolean deliver)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = NULL;

        if (!check->waiting)
                return;
        check->waiting = FALSE;
        g_clear_handle_id(&check->timeout_source, g_source_remove);
        message = g_steal_pointer(&check->message);
        if (check->manage_all) {
                Caller *c = g_hash_table_lookup(check->auth->callers, check->sender);

                /* polkit's answer is kept for the connection's life; without one (a failure, a
                 * timeout) manage-all is asked again at the next lookup. */
                if (c && c->manage_all == MANAGE_ALL_CHECKING)
                        c->manage_all = !deliver || !check->answered ? MANAGE_ALL_UNKNOWN
                                        : error                      ? MANAGE_ALL_NO
                                                                     : MANAGE_ALL_YES;
                return;
        }
        if (deliver)
                check->callback(message, error, check->user_data);
        if (check->destroy)
                check->destroy(check->user_data);
}

/* Nobody waits any more. An interactive question still open is withdrawn so that polkit closes its
 * password dialog; the cancellation expects no reply (so it holds no pending reply on the bus, and a
 * question polkitd has just answered makes no "No such cancellation_id" error anywhere). A question
 * without interaction ends by itself within moments: withdrawing it would only race its answer. */
static void check_abandon(Check *check, const sd_bus_error *error, gboolean deliver)
{
        KilnAuth *auth = check->auth;

        check_finish(check, error, deliver);
        if (!check->in_flight) {
                check_free(check);
                return;
        }
        if (check->cancellation_id)
                g_dbus_connection_call(auth->polkit_bus, POLKIT_BUS_NAME, POLKIT_AUTHORITY_PATH,
                                       POLKIT_AUTHORITY_INTERFACE, "CancelCheckAuthorization",
                                       g_variant_new("(s)", check->cancellation_id), NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
}

static gboolean on_check_timeout(gpointer data)
{
        Check *check = data;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const KilnConfig *config = check->auth->config;

        check->timeout_source = 0;
        g_warning("polkit did not answer about %s for %s in time", check->action, check->sender);
        sd_bus_error_setf(&error, KILN_ERROR_BUSY,
                          "polkit did not answer within %u s whether the caller may use %s; try again",
                          check->interactive ? config->interactive_authorization_timeout_seconds
                                             : config->authorization_timeout_seconds,
                          check->action);
        check_abandon(check, &error, TRUE);
        return G_SOURCE_REMOVE;
}

/* The errors that say polkitd itself is gone (exited, restarted, not yet back): worth one more try
 * with the polkitd that owns the name next. */
static gboolean polkitd_went_away(const GError *error)
{
        return g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
               g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
               g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
               g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_DISCONNECTED);
}

/* polkitd's reply, as the caller's answer. */
static void outcome_from_reply(Check *check, GVariant *reply, sd_bus_error *error)
{
        gboolean authorized = FALSE, challenge = FALSE;
        const char *sep = check->weakens ? " (the run asks for " : "";
        const char *why = check->weakens ? check->weakens : "";
        const char *end = check->weakens ? ")" : "";

        g_variant_get(reply, "((bba{ss}))", &authorized, &challenge, NULL);
        if (authorized)
                return;
        if (challenge && !check->interactive)
                sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                  "Interactive authentication is required for %s%s%s%s", check->action, sep,
                                  why, end);
        else
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized for %s%s%s%s",
                                  check->action, sep, why, end);
}

/* A question that got no answer from polkit. Only polkitd's own refusal to decide is a denial; the bus
 * refusing the question (its limit of pending replies) or polkitd being unreachable says nothing about
 * the caller, who may try again, and must never read as AccessDenied. */
static void outcome_from_failure(Check *check, const GError *failure, sd_bus_error *error)
{
        g_autofree char *remote = g_dbus_error_get_remote_error(failure);
        g_autoptr(GError) stripped = g_error_copy(failure);
        gboolean from_polkitd = remote && g_str_has_prefix(remote, POLKIT_BUS_NAME ".Error.");

        g_dbus_error_strip_remote_error(stripped);
        /* polkitd refusing the background manage-all lookup mostly means that its client has just
         * left the bus: nothing for the log. */
        if (!(check->manage_all && from_polkitd))
                g_warning("Asking polkit about %s for %s failed: %s", check->action, check->sender,
                          failure->message);
        if (from_polkitd)
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized for %s: polkit: %s",
                                  check->action, stripped->message);
        else if (g_error_matches(failure, G_DBUS_ERROR, G_DBUS_ERROR_LIMITS_EXCEEDED))
                sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                  "kilnd is busy: the bus refused another question to polkit about %s (%s); "
                                  "try again",
                                  check->action, stripped->message);
        else
                sd_bus_error_setf(error, KILN_ERROR_BUSY,
                                  "Cannot ask polkit whether the caller may use %s: %s", check->action,
                                  stripped->message);
}

static void check_send(Check *check);

/* The refusal's record, with what polkit was shown: the builder's name (for CreateBuilder the name
 * asked for), the command, the weakenings. */
static void audit_refusal(const Check *check)
{
        const char *builder = NULL, *command = NULL;

        if (!g_variant_lookup(check->details, "builder", "&s", &builder))
                g_variant_lookup(check->details, "name", "&s", &builder);
        g_variant_lookup(check->details, "command", "&s", &command);
        kiln_audit_refused(check->uid, check->sender, builder, command, check->weakens, check->action);
}

static void on_check_reply(GObject *source, GAsyncResult *res, gpointer data)
{
        Check *check = data;
        KilnAuth *auth = check->auth;
        g_autoptr(GError) local = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &local);
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        check->in_flight = FALSE;
        if (!reply && polkitd_went_away(local) && check->waiting && !check->retried && !auth->stopping) {
                /* Asked once more, of the polkitd that owns the name next: now if a new one already
                 * does, else when one appears (within the check's time). */
                g_message("polkitd went away while asked about %s (%s); asking again", check->action,
                          local->message);
                check->retried = TRUE;
                if (auth->polkit_owner && g_strcmp0(auth->polkit_owner, check->asked_owner) != 0)
                        check_send(check);
                else
                        check->retry_when_polkitd_appears = TRUE;
                return;
        }
        check->answered = reply != NULL;
        if (reply)
                outcome_from_reply(check, reply, &error);
        else if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CANCELLED) && check->waiting)
                outcome_from_failure(check, local, &error);
        /* polkit's own no (not a failure to ask it), about a call someone made: the background
         * manage-all lookup refuses nothing. */
        if (reply && sd_bus_error_is_set(&error) && !check->manage_all)
                audit_refusal(check);
        /* Cancelled: kilnd is stopping, and kiln_auth_stop has let the waiter go already. */
        check_finish(check, sd_bus_error_is_set(&error) ? &error : NULL, !auth->stopping);
        check_free(check);
}

static void check_send(Check *check)
{
        KilnAuth *auth = check->auth;
        g_auto(GVariantBuilder) subject = G_VARIANT_BUILDER_INIT(G_VARIANT_TYPE("a{sv}"));

        g_variant_builder_add(&subject, "{sv}", "name", g_variant_new_string(check->sender));
        g_free(check->asked_owner);
        check->asked_owner = g_strdup(auth->polkit_owner);
        check->retry_when_polkitd_appears = FALSE;
        check->in_flight = TRUE;
        /* No timeout of GDBus's own: the check's timer answers the caller, and the Check lives on until
         * polkitd's reply frees the pending reply it stands for. */
        g_dbus_connection_call(auth->polkit_bus, POLKIT_BUS_NAME, POLKIT_AUTHORITY_PATH,
                               POLKIT_AUTHORITY_INTERFACE, "CheckAuthorization",
                               g_variant_new("((sa{sv})s@a{ss}us)", "system-bus-name", &subject,
                                             check->action, check->details,
                                             check->interactive ? POLKIT_FLAG_ALLOW_USER_INTERACTION : 0u,
                                             check->cancellation_id ? check->cancellation_id : ""),
                               G_VARIANT_TYPE("((bba{ss}))"), G_DBUS_CALL_FLAGS_NONE, G_MAXINT, auth->stop,
                               on_check_reply, check);
}

static void on_polkit_appeared(G_GNUC_UNUSED GDBusConnection *connection, G_GNUC_UNUSED const char *name,
                               const char *owner, gpointer data)
{
        KilnAuth *auth = data;
        g_autoptr(GPtrArray) retry = g_ptr_array_new();
        GHashTableIter iter;
        gpointer check;

        g_free(auth->polkit_owner);
        auth->polkit_owner = g_strdup(owner);
        g_hash_table_iter_init(&iter, auth->checks);
        while (g_hash_table_iter_next(&iter, &check, NULL))
                if (((Check *)check)->retry_when_polkitd_appears)
                        g_ptr_array_add(retry, check);
        for (guint i = 0; i < retry->len; i++)
                check_send(retry->pdata[i]);
}

static void on_polkit_vanished(G_GNUC_UNUSED GDBusConnection *connection, G_GNUC_UNUSED const char *name,
                               gpointer data)
{
        KilnAuth *auth = data;

        g_clear_pointer(&auth->polkit_owner, g_free);
}

/* A question about the caller of @c, if the limits leave room for it: per uid (so that one user's burst
 * leaves room for everyone else's calls) and in all (so that kilnd's pending replies stay below the
 * bus's max_replies_per_connection, past which the bus would refuse questions for everyone). */
static Check *check_new(KilnAuth *auth, const Caller *c, const char *action, sd_bus_error *error)
{
        gpointer key = GUINT_TO_POINTER(c->creds.uid);
        guint mine = GPOINTER_TO_UINT(g_hash_table_lookup(auth->checks_per_uid, key));
        Check *check;

        if (mine >= auth->config->authorizations_per_user) {
                sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                  "User %u already has the limit of %u authorization checks in progress "
                                  "(AuthorizationsPerUser); try again when they are answered",
                                  (unsigned)c->creds.uid, auth->config->authorizations_per_user);
                return NULL;
        }
        if (g_hash_table_size(auth->checks) >= auth->config->max_authorizations) {
                sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                  "kilnd is busy: %u authorization checks are in progress, the limit "
                                  "(MaxAuthorizations); try again",
                                  auth->config->max_authorizations);
                return NULL;
        }
        check = g_new0(Check, 1);
        check->auth = auth;
        check->uid = c->creds.uid;
        check->sender = g_strdup(c->sender);
        check->action = g_strdup(action);
        check->waiting = TRUE;
        g_hash_table_add(auth->checks, check);
        g_hash_table_insert(auth->checks_per_uid, key, GUINT_TO_POINTER(mine + 1));
        return check;
}

static void check_start(Check *check)
{
        const KilnConfig *config = check->auth->config;
        unsigned seconds = check->interactive ? config->interactive_authorization_timeout_seconds
                                              : config->authorization_timeout_seconds;

        if (check->interactive)
                check->cancellation_id =
                        g_strdup_printf("kiln-%" G_GUINT64_FORMAT, ++check->auth->next_cancellation_id);
        /* g_timeout_add rather than _seconds: a bound of one second must not end at once. */
        check->timeout_source =
                g_timeout_add((guint)MIN((guint64)seconds * 1000, G_MAXUINT), on_check_timeout, check);
        check_send(check);
}

/* A client that leaves takes its pending checks and its cached credentials with it. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *ret_error)
{
        KilnAuth *auth = userdata;
        const char *name, *old_owner, *new_owner;
        g_autoptr(GPtrArray) left = NULL;
        GHashTableIter iter;
        gpointer check;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] != ':' || *new_owner)
                return 0;
        left = g_ptr_array_new();
        g_hash_table_iter_init(&iter, auth->checks);
        while (g_hash_table_iter_next(&iter, &check, NULL))
                if (((Check *)check)->waiting && g_str_equal(((Check *)check)->sender, name))
                        g_ptr_array_add(left, check);
        for (guint i = 0; i < left->len; i++)
                check_abandon(left->pdata[i], NULL, FALSE);
        g_hash_table_remove(auth->callers, name);
        return 0;
}

KilnAuth *kiln_auth_new(sd_bus *bus, const KilnConfig *config, GError **error)
{
        g_autoptr(KilnAuth) auth = g_new0(KilnAuth, 1);
        int r;

        auth->bus = sd_bus_ref(bus);
        auth->config = config;
        auth->stop = g_cancellable_new();
        auth->callers = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)caller_free);
        auth->checks = g_hash_table_new(NULL, NULL);
        auth->checks_per_uid = g_hash_table_new(NULL, NULL);
        r = sd_bus_match_signal(bus, &auth->name_owner_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "NameOwnerChanged", on_name_owner_changed, auth);
        if (r < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-r), "Cannot watch bus clients: %s",
                            g_strerror(-r));
                return NULL;
        }
        /* polkitd is reached through GDBus on the same system bus (DBUS_SYSTEM_BUS_ADDRESS honoured). */
        auth->polkit_bus = g_bus_get_sync(G_BUS_TYPE_SYSTEM, NULL, error);
        if (!auth->polkit_bus)
                return NULL;
        auth->polkit_watch = g_bus_watch_name_on_connection(
                auth->polkit_bus, POLKIT_BUS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE, on_polkit_appeared,
                on_polkit_vanished, auth, NULL);
        return g_steal_pointer(&auth);
}

void kiln_auth_free(KilnAuth *auth)
{
        if (!auth)
                return;
        /* A question still in flight here (kiln_auth_stop gave up on it) keeps its Check: its reply
         * callback may yet run and must not find it freed. */
        if (g_hash_table_size(auth->checks) > 0)
                g_warning("%u polkit checks still in flight at exit", g_hash_table_size(auth->checks));
        if (auth->polkit_watch)
                g_bus_unwatch_name(auth->polkit_watch);
        sd_bus_slot_unref(auth->name_owner_slot);
        g_hash_table_destroy(auth->callers);
        g_hash_table_destroy(auth->checks);
        g_hash_table_destroy(auth->checks_per_uid);
        g_clear_object(&auth->stop);
        g_clear_object(&auth->polkit_bus);
        g_free(auth->polkit_owner);
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

int kiln_auth_check_method(KilnAuth *auth, sd_bus_message *m, const char *const *details,
                           KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy)
{
        const char *action =
                kiln_auth_action_for(sd_bus_message_get_interface(m), sd_bus_message_get_member(m));

        return kiln_auth_check(auth, m, action, details, callback, user_data, destroy);
}

int kiln_auth_check(KilnAuth *auth, sd_bus_message *m, const char *action, const char *const *details,
                    KilnAuthCallback callback, gpointer user_data, GDestroyNotify destroy)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_auto(GVariantBuilder) polkit_details = G_VARIANT_BUILDER_INIT(G_VARIANT_TYPE("a{ss}"));
        Caller *caller;
        Check *check = NULL;

        caller = caller_lookup(auth, m, &error);
        if (caller && action && caller->creds.uid != 0)
                check = check_new(auth, caller, action, &error);
        if (!check) {
                callback(m, sd_bus_error_is_set(&error) ? &error : NULL, user_data);
                if (destroy)
                        destroy(user_data);
                return 1;
        }

        check->message = sd_bus_message_ref(m);
        check->interactive = sd_bus_message_get_allow_interactive_authorization(m) > 0;
        check->callback = callback;
        check->user_data = user_data;
        check->destroy = destroy;
        for (const char *const *d = details; d && d[0] && d[1]; d += 2) {
                g_variant_builder_add(&polkit_details, "{ss}", d[0], d[1]);
                if (g_str_equal(d[0], "weakens"))
                        check->weakens = g_strdup(d[1]);
        }
        check->details = g_variant_ref_sink(g_variant_builder_end(&polkit_details));
        check_start(check);
        return 1;
}

void kiln_auth_stop(KilnAuth *auth)
{
        gint64 deadline = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
        g_autoptr(GPtrArray) all = g_ptr_array_new();
        GHashTableIter iter;
        gpointer check;

        auth->stopping = TRUE;
        g_hash_table_iter_init(&iter, auth->checks);
        while (g_hash_table_iter_next(&iter, &check, NULL))
                g_ptr_array_add(all, check);
        /* Every waiter lets go of the call it holds now; open password dialogs are withdrawn. */
        for (guint i = 0; i < all->len; i++)
                check_abandon(all->pdata[i], NULL, FALSE);
        /* The rest end when their cancelled calls complete on this loop. */
        g_cancellable_cancel(auth->stop);
        while (g_hash_table_size(auth->checks) > 0 && g_get_monotonic_time() < deadline)
                if (!g_main_context_iteration(NULL, FALSE))
                        g_usleep(1000);
}

gboolean kiln_auth_may_access(KilnAuth *auth, sd_bus_message *m, uid_t owner)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        Caller *c = caller_lookup(auth, m, NULL);
        Check *check;

        if (!c)
                return FALSE;
        if (c->creds.uid == 0 || c->creds.uid == owner)
                return TRUE;
        /* Asked once per connection, without interaction, in the background; never withdrawn (it ends
         * by itself), so a client that leaves right after its call costs polkitd nothing more. Past the
         * limits it is simply asked at a later lookup. */
        if (c->manage_all == MANAGE_ALL_UNKNOWN && !auth->stopping) {
                check = check_new(auth, c, KILN_ACTION_MANAGE_ALL, &error);
                if (check) {
                        c->manage_all = MANAGE_ALL_CHECKING;
                        check->manage_all = TRUE;
                        check->details =
                                g_variant_ref_sink(g_variant_new_array(G_VARIANT_TYPE("{ss}"), NULL, 0));
                        check_start(check);
                }
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
