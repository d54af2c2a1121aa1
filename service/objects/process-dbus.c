/* SPDX-License-Identifier: Apache-2.0 */
#include <signal.h>

#include "objects/process-dbus.h"

static int process_find(sd_bus *bus, const char *path, G_GNUC_UNUSED const char *interface, void *userdata,
                        void **found, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *m = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        KilnProcess *p = g_hash_table_lookup(m->processes, path);

        /* Another user's process does not exist for the caller, as with builders. */
        if (!p || (current && !kiln_auth_may_access(m->auth, current, p->owner)))
                return 0;
        *found = p;
        return 1;
}

static int process_enumerate(sd_bus *bus, G_GNUC_UNUSED const char *path, void *userdata, char ***nodes,
                             G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *m = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        g_autoptr(GPtrArray) paths = g_ptr_array_new();
        GHashTableIter iter;
        KilnProcess *p;

        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (!current || kiln_auth_may_access(m->auth, current, p->owner))
                        g_ptr_array_add(paths, strdup(p->object_path)); /* sd-bus frees with free() */
        g_ptr_array_add(paths, NULL);
        *nodes = (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
        return 1;
}

char **kiln_process_paths_of(KilnManager *m, const char *builder_id)
{
        g_autoptr(GPtrArray) paths = g_ptr_array_new();
        GHashTableIter iter;
        KilnProcess *p;

        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (p->state != KILN_PROCESS_EXITED && g_str_equal(p->builder_id, builder_id))
                        g_ptr_array_add(paths, g_strdup(p->object_path));
        g_ptr_array_sort(paths, (GCompareFunc)g_strcmp0);
        g_ptr_array_add(paths, NULL);
        return (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
}

/* Every string on the bus costs its length, a 4-byte length, a NUL and up to 3 bytes of padding; the rest
 * of one Process object's entry (its path, 3 standard interfaces, 8 property names, types and fixed-size
 * values, dict entry padding) is well under 1 KiB. */
static guint64 process_listing_bytes(const KilnProcess *p)
{
        guint64 n = 1024 + strlen(p->object_path) + strlen(p->builder_path) + 16;

        for (char **a = p->argv; a && *a; a++)
                n += strlen(*a) + 8;
        return n;
}

guint64 kiln_process_listing_bytes(KilnManager *m, sd_bus_message *caller)
{
        GHashTableIter iter;
        KilnProcess *p;
        guint64 n = 0;

        g_hash_table_iter_init(&iter, m->processes);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&p))
                if (kiln_auth_may_access(m->auth, caller, p->owner))
                        n += process_listing_bytes(p);
        return n;
}

static int property_get_state(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                              G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                              sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnProcess *p = userdata;

        return sd_bus_message_append(reply, "s", kiln_process_state_name(p->state));
}

static int property_get_argv(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                             G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                             sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnProcess *p = userdata;

        return sd_bus_message_append_strv(reply, p->argv);
}

static int method_wait(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnProcess *p = userdata;

        if (p->state == KILN_PROCESS_EXITED)
                return sd_bus_reply_method_return(m, "i", p->exit_status);
        /* Answered at exit; bounded by the bus daemon's limit of pending replies per connection. */
        g_ptr_array_add(p->waiters, sd_bus_message_ref(m));
        return 1;
}

static const struct {
        const char *name;
        int number;
} signal_names[] = {
        {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"ALRM", SIGALRM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
        {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}, {"PIPE", SIGPIPE},
};

/* "TERM", "SIGTERM", "15": as kill(1) takes them. */
static int parse_signal(const char *s)
{
        const char *name = g_str_has_prefix(s, "SIG") ? s + 3 : s;
        guint64 n;

        for (size_t i = 0; i < G_N_ELEMENTS(signal_names); i++)
                if (g_ascii_strcasecmp(signal_names[i].name, name) == 0)
                        return signal_names[i].number;
        if (g_ascii_string_to_unsigned(s, 10, 1, SIGRTMAX, &n, NULL))
                return (int)n;
        return -1;
}

static int method_kill(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnProcess *p = userdata;
        g_autoptr(GError) local = NULL;
        const char *name;
        int r, sig;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        sig = parse_signal(name);
        if (sig < 0)
                return sd_bus_error_setf(error, KILN_ERROR_INVALID_ARGUMENT,
                                         "Invalid signal: '%.32s' is not a signal name or number", name);
        if (p->state != KILN_PROCESS_RUNNING || !p->container)
                return sd_bus_error_setf(error, KILN_ERROR_NOT_FOUND, "Process %s is not running",
                                         p->object_path);
        if (!kiln_container_kill(p->container, sig, &local))
                return sd_bus_error_setf(error, KILN_ERROR_RUNTIME_FAILED, "%s", local->message);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_resize(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnProcess *p = userdata;
        g_autoptr(GError) local = NULL;
        uint16_t rows, cols;
        int r;

        r = sd_bus_message_read(m, "qq", &rows, &cols);
        if (r < 0)
                return r;
        if (rows == 0 || cols == 0)
                return sd_bus_error_set(error, KILN_ERROR_INVALID_ARGUMENT,
                                        "Invalid size: rows and columns must be above zero");
        if (!p->options.terminal)
                return sd_bus_error_setf(error, KILN_ERROR_INVALID_ARGUMENT,
                                         "Invalid size: process %s has no terminal", p->object_path);
        if (p->state != KILN_PROCESS_RUNNING || !p->container)
                return sd_bus_error_setf(error, KILN_ERROR_NOT_FOUND, "Process %s is not running",
                                         p->object_path);
        if (!kiln_container_resize(p->container, rows, cols, &local))
                return kiln_error_to_bus(local, error);
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable process_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Builder", "o", NULL, offsetof(KilnProcess, builder_path),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Argv", "as", property_get_argv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Owner", "u", NULL, offsetof(KilnProcess, owner), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Pid", "u", NULL, offsetof(KilnProcess, pid), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ExitStatus", "i", NULL, offsetof(KilnProcess, exit_status),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StartedAt", "t", NULL, offsetof(KilnProcess, started_at),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ExitedAt", "t", NULL, offsetof(KilnProcess, exited_at),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Wait", SD_BUS_NO_ARGS, SD_BUS_RESULT("i", exit_status), method_wait,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Kill", SD_BUS_ARGS("s", signal), SD_BUS_NO_RESULT, method_kill,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Resize", SD_BUS_ARGS("q", rows, "q", cols), SD_BUS_NO_RESULT, method_resize,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Exited", SD_BUS_ARGS("i", exit_status), 0),
        SD_BUS_VTABLE_END,
};

int kiln_process_register(KilnManager *m)
{
        int r = sd_bus_add_fallback_vtable(m->bus, &m->slots[4], KILN_PROCESS_PATH_PREFIX,
                                           KILN_PROCESS_INTERFACE, process_vtable, process_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, &m->slots[5], KILN_PROCESS_PATH_PREFIX,
                                               process_enumerate, m);
        return r;
}

/* Signals, to the clients that may see the process (kiln_manager_send_to_watchers). */

typedef enum { SIGNAL_ADDED, SIGNAL_REMOVED, SIGNAL_CHANGED, SIGNAL_EXITED } SignalKind;

typedef struct {
        const KilnProcess *process;
        SignalKind kind;
} SignalRequest;

static int append_properties(sd_bus_message *s, const KilnProcess *p, gboolean all)
{
        int r = sd_bus_message_open_container(s, 'a', "{sv}");

        if (r >= 0 && all)
                r = sd_bus_message_append(s, "{sv}{sv}{sv}", "Builder", "o", p->builder_path, "Owner", "u",
                                          (uint32_t)p->owner, "StartedAt", "t", p->started_at);
        if (r >= 0)
                r = sd_bus_message_open_container(s, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(s, 's', "Argv");
        if (r >= 0)
                r = sd_bus_message_open_container(s, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(s, p->argv);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        if (r >= 0)
                r = sd_bus_message_append(s, "{sv}{sv}{sv}{sv}", "State", "s",
                                          kiln_process_state_name(p->state), "Pid", "u", p->pid,
                                          "ExitStatus", "i", p->exit_status, "ExitedAt", "t", p->exited_at);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        return r;
}

static int build_signal(KilnManager *m, const char *destination, gconstpointer data, sd_bus_message **ret)
{
        const SignalRequest *req = data;
        const KilnProcess *p = req->process;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int r;

        switch (req->kind) {
        case SIGNAL_ADDED:
        case SIGNAL_REMOVED:
                r = sd_bus_message_new_signal(
                        m->bus, &s, KILN_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                        req->kind == SIGNAL_ADDED ? "InterfacesAdded" : "InterfacesRemoved");
                if (r >= 0)
                        r = sd_bus_message_append_basic(s, 'o', p->object_path);
                if (r >= 0 && req->kind == SIGNAL_REMOVED)
                        r = sd_bus_message_append(s, "as", 1, KILN_PROCESS_INTERFACE);
                if (r >= 0 && req->kind == SIGNAL_ADDED) {
                        r = sd_bus_message_open_container(s, 'a', "{sa{sv}}");
                        if (r >= 0)
                                r = sd_bus_message_open_container(s, 'e', "sa{sv}");
                        if (r >= 0)
                                r = sd_bus_message_append_basic(s, 's', KILN_PROCESS_INTERFACE);
                        if (r >= 0)
                                r = append_properties(s, p, TRUE);
                        if (r >= 0)
                                r = sd_bus_message_close_container(s);
                        if (r >= 0)
                                r = sd_bus_message_close_container(s);
                }
                break;
        case SIGNAL_CHANGED:
                r = sd_bus_message_new_signal(m->bus, &s, p->object_path, "org.freedesktop.DBus.Properties",
                                              "PropertiesChanged");
                if (r >= 0)
                        r = sd_bus_message_append_basic(s, 's', KILN_PROCESS_INTERFACE);
                if (r >= 0)
                        r = append_properties(s, p, FALSE);
                if (r >= 0)
                        r = sd_bus_message_append_strv(s, NULL);
                break;
        case SIGNAL_EXITED:
                r = sd_bus_message_new_signal(m->bus, &s, p->object_path, KILN_PROCESS_INTERFACE, "Exited");
                if (r >= 0)
                        r = sd_bus_message_append(s, "i", p->exit_status);
                break;
        default:
                r = -EINVAL;
        }
        if (r >= 0)
                r = sd_bus_message_set_destination(s, destination);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&s);
        return 0;
}

static void emit(KilnProcess *p, SignalKind kind)
{
        SignalRequest req = {p, kind};

        kiln_manager_send_to_watchers(p->manager, p->owner, build_signal, &req);
}

void kiln_process_emit_added(KilnProcess *p)
{
        emit(p, SIGNAL_ADDED);
}

void kiln_process_emit_removed(KilnProcess *p)
{
        emit(p, SIGNAL_REMOVED);
}

void kiln_process_emit_changed(KilnProcess *p)
{
        emit(p, SIGNAL_CHANGED);
}

void kiln_process_emit_exited(KilnProcess *p)
{
        emit(p, SIGNAL_CHANGED);
        emit(p, SIGNAL_EXITED);
}
