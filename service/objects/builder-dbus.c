/* SPDX-License-Identifier: Apache-2.0 */
#include "base/audit.h"
#include "bus/bus-properties.h"
#include "objects/builder-dbus.h"
#include "objects/process-dbus.h"
#include "run/run-privileges.h"
#include "run/run-volumes.h"
#include "base/validate.h"

int kiln_builder_object_find(sd_bus *bus, const char *path, G_GNUC_UNUSED const char *interface,
                             void *userdata, void **found, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        const char *id;
        KilnBuilder *b;

        if (!g_str_has_prefix(path, KILN_BUILDER_PATH_PREFIX "/"))
                return 0;
        id = path + strlen(KILN_BUILDER_PATH_PREFIX "/");
        b = kiln_id_is_valid(id) ? g_hash_table_lookup(manager->builders, id) : NULL;
        if (!b)
                return 0;
        /* Another user's builder does not exist for the caller: property reads, introspection and
         * method calls all answer "unknown object". */
        if (current && !kiln_auth_may_access(manager->auth, current, b->owner))
                return 0;
        *found = b;
        return 1;
}

int kiln_builder_node_enumerator(sd_bus *bus, G_GNUC_UNUSED const char *path, void *userdata, char ***nodes,
                                 G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        g_autoptr(GPtrArray) paths = g_ptr_array_new();
        GHashTableIter iter;
        KilnBuilder *b;

        if (current)
                kiln_auth_track_caller(manager->auth, current);
        g_hash_table_iter_init(&iter, manager->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b))
                if (!current || kiln_auth_may_access(manager->auth, current, b->owner))
                        g_ptr_array_add(paths, strdup(b->object_path)); /* sd-bus frees with free() */
        g_ptr_array_add(paths, NULL);
        *nodes = (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
        return 1;
}

static int property_get_config(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                               G_GNUC_UNUSED const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnBuilder *b = userdata;

        for (size_t i = 0; i < kiln_config_n_fields; i++)
                if (g_str_equal(kiln_config_fields[i].property, property))
                        return kiln_builder_config_append_property(&b->config, &kiln_config_fields[i],
                                                                   reply);
        return -ENOENT;
}

static int append_processes(sd_bus_message *reply, const KilnBuilder *b)
{
        g_auto(GStrv) paths = kiln_process_paths_of(b->manager, b->id);
        int r = sd_bus_message_open_container(reply, 'a', "o");

        for (char **p = paths; r >= 0 && *p; p++)
                r = sd_bus_message_append_basic(reply, 'o', *p);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int property_get_processes(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                  G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                                  sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        return append_processes(reply, userdata);
}

/* Configure: every change is read and checked before anything is applied; then the metadata is
 * saved, and only if that worked does the live builder change. */
static int method_configure(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        KilnManager *manager = b->manager;
        g_auto(KilnBuilderConfig) changes = {0};
        g_auto(KilnBuilderConfig) previous = {0};
        g_autoptr(GError) local = NULL;
        g_autofree char *dir = NULL;
        KilnFieldMask mask = 0;
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const KilnConfigField *field;
                const char *key;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                if (!kiln_check_array_limit("changes", ++n, manager->config, &local))
                        return kiln_error_to_bus(local, error);
                field = kiln_config_field_lookup(key);
                if (!field)
                        return sd_bus_error_setf(error, KILN_ERROR_INVALID_ARGUMENT,
                                                 "Invalid changes: unknown key '%.64s'", key);
                if (!kiln_builder_config_read_variant(&changes, field, m, manager->config, &local))
                        return kiln_error_to_bus(local, error);
                mask |= 1u << (field - kiln_config_fields);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        kiln_builder_config_assign(&previous, &b->config, mask);
        kiln_builder_config_assign(&b->config, &changes, mask);
        dir = kiln_storage_builder_dir(manager->storage, b->id);
        if (!kiln_builder_save(b, dir, &local)) {
                kiln_builder_config_assign(&b->config, &previous, mask);
                g_warning("Cannot save builder %s: %s", b->name, local->message);
                /* An internal failure whatever its cause: the message names kilnd's state files. */
                local->domain = KILN_ERROR;
                local->code = KILN_ERROR_CODE_FAILED;
                return kiln_error_to_bus(local, error);
        }
        if (mask)
                kiln_builder_emit_changed(manager, b, mask);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_remove(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        KilnManager *manager = b->manager;
        g_autoptr(GError) local = NULL;
        g_autofree char *id = NULL;
        const KilnCreds *creds;
        uid_t owner;
        int force = 0, r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                if (!g_str_equal(key, "force"))
                        return sd_bus_error_setf(error, KILN_ERROR_INVALID_ARGUMENT,
                                                 "Invalid options: unknown key '%.64s'", key);
                r = sd_bus_message_read(m, "v", "b", &force);
                if (r < 0)
                        return sd_bus_error_set(error, KILN_ERROR_INVALID_ARGUMENT,
                                                "Invalid force: expected a value of type 'b'");
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                return r;
        if (b->pending_remove)
                return sd_bus_error_setf(error, KILN_ERROR_BUSY, "Builder '%s' is being removed", b->name);
        /* Copy/CopyOut: a copy's thread writes or reads the mounted root file system until it ends. */
        if (kiln_copy_count_for_builder(b->id) > 0)
                return sd_bus_error_setf(error, KILN_ERROR_BUSY, "Builder '%s' has a copy in progress",
                                         b->name);
        if (kiln_process_count_running(manager, b->id, 0) > 0) {
                if (!force)
                        return sd_bus_error_setf(
                                error, KILN_ERROR_BUSY,
                                "Builder '%s' has running processes (force removes it anyway)", b->name);
                /* Recorded now: the owner's processes are killed on the caller's word. */
                if (creds->uid != b->owner)
                        kiln_audit_removed_for_other(creds->uid, sd_bus_message_get_sender(m), b->id,
                                                     b->owner);
                /* Answered when the last of them has ended (kiln_builder_processes_changed). */
                b->pending_remove = sd_bus_message_ref(m);
                kiln_process_kill_builder(manager, b->id);
                return 1;
        }
        id = g_strdup(b->id);
        owner = b->owner;
        if (!kiln_manager_remove_builder(manager, b, &local))
                return kiln_error_to_bus(local, error);
        if (creds->uid != owner)
                kiln_audit_removed_for_other(creds->uid, sd_bus_message_get_sender(m), id, owner);
        return sd_bus_reply_method_return(m, NULL);
}

typedef struct {
        KilnManager *manager;
        char *id;
        uid_t caller_uid;
} MountRequest;

static void mount_request_free(gpointer data)
{
        MountRequest *req = data;

        g_free(req->id);
        g_free(req);
}

static void mount_authorized(sd_bus_message *m, const sd_bus_error *denied, gpointer data)
{
        MountRequest *req = data;
        g_autoptr(GError) local = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        KilnBuilder *b;
        char *path;

        if (denied) {
                sd_bus_reply_method_error(m, denied);
                return;
        }
        /* The builder may have been removed while polkit was asked. */
        b = g_hash_table_lookup(req->manager->builders, req->id);
        if (!b) {
                sd_bus_reply_method_errorf(m, KILN_ERROR_NOT_FOUND, "Builder %s was removed", req->id);
                return;
        }
        /* Mount() holds one reference however often it is called; runs hold their own. A builder with
         * a user namespace shows its files as its runs see them: owned by the mapped IDs. */
        if (!b->mount_path) {
                g_auto(KilnIdMaps) maps = {0};
                gboolean mapped = g_strcmp0(b->config.userns, "auto") == 0;

                path = mapped && !kiln_manager_id_maps(req->manager, b->owner, &maps, &local)
                               ? NULL
                               : kiln_manager_acquire_rootfs(req->manager, b, mapped ? &maps : NULL, &local);
                if (!path) {
                        kiln_error_to_bus(local, &error);
                        sd_bus_reply_method_error(m, &error);
                        return;
                }
                b->mount_path = path;
        }
        kiln_audit_mount(req->caller_uid, sd_bus_message_get_sender(m), b->id, KILN_ACTION_MOUNT);
        sd_bus_reply_method_return(m, "s", b->mount_path);
}

static int method_mount(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        MountRequest *req;
        const char *details[] = {"builder", b->name, NULL};
        const KilnCreds *creds;
        int r;

        r = kiln_auth_get_caller(b->manager->auth, m, &creds, error);
        if (r < 0)
                return r;
        req = g_new0(MountRequest, 1);
        req->caller_uid = creds->uid;
        req->manager = b->manager;
        req->id = g_strdup(b->id);
        return kiln_auth_check_method(req->manager->auth, m, details, mount_authorized, req,
                                      mount_request_free);
}

static int method_unmount(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        KilnManager *manager = b->manager;
        if (b->mount_path) {
                g_clear_pointer(&b->mount_path, g_free);
                kiln_manager_release_rootfs(manager, b);
        }
        /* An administrator who unmounts expects nothing mounted afterwards, unless a run holds it: a
         * mount kept for the next run (or just let go by Mount()) goes now. */
        kiln_manager_unmount_lingering(manager, b);
        return sd_bus_reply_method_return(m, NULL);
}

/* Signals about builders, sent to each client that may see them (kiln_manager_send_to_watchers). */

static int append_variant(sd_bus_message *s, const KilnBuilder *b, const char *name, const char *sig,
                          const KilnConfigField *field)
{
        int r = sd_bus_message_open_container(s, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(s, 's', name);
        if (r >= 0)
                r = sd_bus_message_open_container(s, 'v', sig);
        if (r >= 0)
                r = field ? kiln_builder_config_append_property(&b->config, field, s)
                          : append_processes(s, b);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        return r;
}

/* The Builder interface's properties as a{sv}: all of them, or the config fields in @mask (and
 * Processes if @processes). */
static int append_properties(sd_bus_message *s, const KilnBuilder *b, gboolean all, KilnFieldMask mask,
                             gboolean processes)
{
        int r = sd_bus_message_open_container(s, 'a', "{sv}");

        if (r >= 0 && all)
                r = sd_bus_message_append(s, "{sv}{sv}{sv}{sv}{sv}", "Id", "s", b->id, "Name", "s", b->name,
                                          "Owner", "u", (uint32_t)b->owner, "From", "s", b->from, "Created",
                                          "t", (uint64_t)b->created_usec);
        for (size_t i = 0; r >= 0 && i < kiln_config_n_fields; i++)
                if (all || (mask & (1u << i)))
                        r = append_variant(s, b, kiln_config_fields[i].property,
                                           kiln_config_field_signature(&kiln_config_fields[i]),
                                           &kiln_config_fields[i]);
        if (r >= 0 && (all || processes))
                r = append_variant(s, b, "Processes", "ao", NULL);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        return r;
}

typedef enum { SIGNAL_ADDED, SIGNAL_REMOVED, SIGNAL_CHANGED } SignalKind;

static const char *const standard_interfaces[] = {
        "org.freedesktop.DBus.Peer",
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Properties",
        NULL,
};

typedef struct {
        const KilnBuilder *builder;
        SignalKind kind;
        KilnFieldMask mask;
        gboolean processes; /* SIGNAL_CHANGED: Processes changed */
} SignalRequest;

static int build_signal(KilnManager *manager, const char *destination, gconstpointer data,
                        sd_bus_message **ret)
{
        const SignalRequest *req = data;
        const KilnBuilder *b = req->builder;
        SignalKind kind = req->kind;
        KilnFieldMask mask = req->mask;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int r;

        if (kind == SIGNAL_CHANGED)
                r = sd_bus_message_new_signal(manager->bus, &s, b->object_path,
                                              "org.freedesktop.DBus.Properties", "PropertiesChanged");
        else
                r = sd_bus_message_new_signal(
                        manager->bus, &s, KILN_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                        kind == SIGNAL_ADDED ? "InterfacesAdded" : "InterfacesRemoved");
        if (r < 0)
                return r;
        r = sd_bus_message_set_destination(s, destination);
        if (r < 0)
                return r;

        switch (kind) {
        case SIGNAL_CHANGED:
                r = sd_bus_message_append_basic(s, 's', KILN_BUILDER_INTERFACE);
                if (r >= 0)
                        r = append_properties(s, b, FALSE, mask, req->processes);
                if (r >= 0)
                        r = sd_bus_message_append_strv(s, NULL);
                break;
        case SIGNAL_ADDED:
                r = sd_bus_message_append_basic(s, 'o', b->object_path);
                if (r >= 0)
                        r = sd_bus_message_open_container(s, 'a', "{sa{sv}}");
                for (const char *const *i = standard_interfaces; r >= 0 && *i; i++)
                        r = sd_bus_message_append(s, "{sa{sv}}", *i, 0);
                if (r >= 0)
                        r = sd_bus_message_open_container(s, 'e', "sa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append_basic(s, 's', KILN_BUILDER_INTERFACE);
                if (r >= 0)
                        r = append_properties(s, b, TRUE, 0, FALSE);
                if (r >= 0)
                        r = sd_bus_message_close_container(s);
                if (r >= 0)
                        r = sd_bus_message_close_container(s);
                break;
        case SIGNAL_REMOVED:
                r = sd_bus_message_append(s, "o", b->object_path);
                if (r >= 0)
                        r = sd_bus_message_append(s, "as", 4, standard_interfaces[0], standard_interfaces[1],
                                                  standard_interfaces[2], KILN_BUILDER_INTERFACE);
                break;
        }
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&s);
        return 0;
}

static void emit(KilnManager *manager, const KilnBuilder *b, SignalKind kind, KilnFieldMask mask)
{
        SignalRequest req = {b, kind, mask, FALSE};

        kiln_manager_send_to_watchers(manager, b->owner, build_signal, &req);
}

void kiln_builder_emit_added(KilnManager *manager, KilnBuilder *b)
{
        emit(manager, b, SIGNAL_ADDED, 0);
}

void kiln_builder_emit_removed(KilnManager *manager, KilnBuilder *b)
{
        emit(manager, b, SIGNAL_REMOVED, 0);
}

void kiln_builder_emit_changed(KilnManager *manager, KilnBuilder *b, KilnFieldMask fields)
{
        emit(manager, b, SIGNAL_CHANGED, fields);
}

void kiln_builder_processes_changed(KilnManager *manager, KilnBuilder *b)
{
        SignalRequest req = {b, SIGNAL_CHANGED, 0, TRUE};
        g_autoptr(GError) error = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;

        kiln_manager_send_to_watchers(manager, b->owner, build_signal, &req);
        if (!b->pending_remove || kiln_process_count_running(manager, b->id, 0) > 0)
                return;
        /* The last process a Remove(force) killed has ended: finish the removal it asked for. */
        call = g_steal_pointer(&b->pending_remove);
        if (!kiln_manager_remove_builder(manager, b, &error)) {
                _cleanup_(sd_bus_error_free) sd_bus_error bus_error = SD_BUS_ERROR_NULL;
                kiln_error_to_bus(error, &bus_error);
                sd_bus_reply_method_error(call, &bus_error);
                return;
        }
        sd_bus_reply_method_return(call, NULL);
}

/* Run, RunCaptured, Start: read and check everything, authorize, then launch. */
typedef struct {
        KilnManager *manager;
        char *builder_id;
        char **argv;
        KilnRunOptions options;
        KilnProcessMode mode;
        uid_t caller_uid;
        gboolean reserved; /* holds one of caller_uid's ProcessesPerUser slots */
        char *weakened;    /* what the run weakens, "; "-joined, or NULL: for the audit record */
} RunRequest;

static void run_request_free(gpointer data)
{
        RunRequest *req = data;

        /* Refused, dropped (the caller left, kilnd stops), or the builder went: the slot is free. */
        if (req->reserved)
                kiln_manager_release_process(req->manager, req->caller_uid);
        g_free(req->builder_id);
        g_free(req->weakened);
        g_strfreev(req->argv);
        kiln_run_options_clear(&req->options);
        g_free(req);
}

static void run_authorized(sd_bus_message *m, const sd_bus_error *denied, gpointer data)
{
        RunRequest *req = data;
        KilnBuilder *b;

        if (denied) {
                sd_bus_reply_method_error(m, denied);
                return;
        }
        b = g_hash_table_lookup(req->manager->builders, req->builder_id);
        if (!b || b->pending_remove) {
                sd_bus_reply_method_errorf(m, KILN_ERROR_NOT_FOUND, "Builder %s was removed",
                                           req->builder_id);
                return;
        }
        /* The Process object takes the slot over: kiln_process_launch creates it (it counts as running
         * from then on) or fails, before the main loop runs again, so no other call sees the gap. */
        kiln_manager_release_process(req->manager, req->caller_uid);
        req->reserved = FALSE;
        if (req->weakened)
                kiln_audit_run_weakened(req->caller_uid, sd_bus_message_get_sender(m), b->id,
                                        (const char *const *)req->argv, req->weakened,
                                        KILN_ACTION_RUN_PRIVILEGED);
        kiln_process_launch(req->manager, b, m, req->caller_uid, req->argv, &req->options, req->mode);
}

static int start_run(sd_bus_message *m, KilnBuilder *b, KilnProcessMode mode, sd_bus_error *error)
{
        KilnManager *manager = b->manager;
        RunRequest *req = g_new0(RunRequest, 1);
        g_autoptr(GError) local = NULL;
        g_autofree char *command = NULL, *weakened = NULL;
        g_autoptr(GPtrArray) weakenings = NULL;
        const KilnCreds *creds;
        KilnRunInput input;
        const char *details[] = {"builder", b->name, "command", NULL, NULL, NULL, NULL};
        int r;

        req->manager = manager;
        req->builder_id = g_strdup(b->id);
        req->mode = mode;
        kiln_run_options_init(&req->options);

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                goto fail;
        req->caller_uid = creds->uid;
        if (!kiln_bus_read_strv(m, "argv", NULL, manager->config, &req->argv, &local) ||
            !kiln_run_options_read(&req->options, m, manager->config, &local)) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        if (b->pending_remove) {
                r = sd_bus_error_setf(error, KILN_ERROR_BUSY, "Builder '%s' is being removed", b->name);
                goto fail;
        }
        /* What the run would make kilnd keep: argv and env bytes, descriptors (process.h). */
        if (!kiln_process_check_limits(manager, req->caller_uid, req->argv, &req->options, &local)) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        /* The slot is taken before polkit is asked: the count then includes every call still being
         * authorized. */
        if (!kiln_manager_reserve_process(manager, req->caller_uid, &local)) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        req->reserved = TRUE;
        /* Decided on the resolved configuration, before anything changes; the volumes and mounts
         * (the builder's as they are now) are resolved once, into the list the run is prepared from. */
        if (!kiln_run_volumes_resolve(&req->options, b->config.volumes, creds, &local) ||
            !kiln_run_groups_resolve(&req->options, b->config.group_add, creds, &local)) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        /* The devices too: host nodes stat()ed, directories walked, CDI names looked up, once. */
        req->options.resolved_devices = kiln_run_devices_resolve(
                req->options.devices, (const char *const *)manager->config->cdi_spec_dirs, creds, &local);
        if (!req->options.resolved_devices) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        kiln_manager_run_input(manager, b, &input);
        weakenings = kiln_run_weakenings(&input, &req->options, creds, &local);
        if (!weakenings) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }
        command = g_strjoinv(" ", req->argv);
        details[3] = command;
        if (weakenings->len > 0) {
                g_ptr_array_add(weakenings, NULL);
                weakened = g_strjoinv("; ", (char **)weakenings->pdata);
                details[4] = "weakens";
                details[5] = weakened;
                req->weakened = g_strdup(weakened);
        }
        return kiln_auth_check(manager->auth, m, weakened ? KILN_ACTION_RUN_PRIVILEGED : KILN_ACTION_RUN,
                               details, run_authorized, req, run_request_free);

fail:
        run_request_free(req);
        return r;
}

static int method_run(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return start_run(m, userdata, KILN_PROCESS_MODE_RUN, error);
}

static int method_run_captured(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return start_run(m, userdata, KILN_PROCESS_MODE_CAPTURED, error);
}

static int method_start(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return start_run(m, userdata, KILN_PROCESS_MODE_START, error);
}

#define CONFIG_PROPERTY(name, sig)                                                                          \
        SD_BUS_PROPERTY(name, sig, property_get_config, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

const sd_bus_vtable kiln_builder_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", NULL, offsetof(KilnBuilder, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(KilnBuilder, name), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Owner", "u", NULL, offsetof(KilnBuilder, owner), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("From", "s", NULL, offsetof(KilnBuilder, from), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Created", "t", NULL, offsetof(KilnBuilder, created_usec),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        CONFIG_PROPERTY("Isolation", "s"),
        CONFIG_PROPERTY("UserNamespace", "s"),
        CONFIG_PROPERTY("Env", "as"),
        CONFIG_PROPERTY("WorkingDir", "s"),
        CONFIG_PROPERTY("User", "s"),
        CONFIG_PROPERTY("Hostname", "s"),
        CONFIG_PROPERTY("Entrypoint", "as"),
        CONFIG_PROPERTY("Cmd", "as"),
        CONFIG_PROPERTY("Shell", "as"),
        CONFIG_PROPERTY("Volumes", "as"),
        CONFIG_PROPERTY("Labels", "a{ss}"),
        CONFIG_PROPERTY("CapAdd", "as"),
        CONFIG_PROPERTY("CapDrop", "as"),
        CONFIG_PROPERTY("Ulimits", "as"),
        CONFIG_PROPERTY("GroupAdd", "as"), /* run parity */
        /* Images (docs/images.md) */
        CONFIG_PROPERTY("StopSignal", "s"),
        CONFIG_PROPERTY("ExposedPorts", "as"),
        /* Images: the base layers (bottom first) and what the image said beyond the configuration. */
        SD_BUS_PROPERTY("Layers", "as", kiln_bus_property_get_strv, offsetof(KilnBuilder, layers),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Image", "s", kiln_bus_property_get_string, offsetof(KilnBuilder, image),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        /* Network settings (network.h) */
        CONFIG_PROPERTY("Network", "s"),
        CONFIG_PROPERTY("NetworkOptions", "as"),
        CONFIG_PROPERTY("Dns", "as"),
        CONFIG_PROPERTY("DnsSearch", "as"),
        CONFIG_PROPERTY("DnsOption", "as"),
        CONFIG_PROPERTY("AddHost", "as"),
        CONFIG_PROPERTY("NoHosts", "b"),
        SD_BUS_PROPERTY("Processes", "ao", property_get_processes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Configure", SD_BUS_ARGS("a{sv}", changes), SD_BUS_NO_RESULT,
                                method_configure, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Remove", SD_BUS_ARGS("a{sv}", options), SD_BUS_NO_RESULT, method_remove,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Run", SD_BUS_ARGS("as", argv, "a{sv}", options),
                                SD_BUS_RESULT("i", exit_status), method_run, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RunCaptured", SD_BUS_ARGS("as", argv, "a{sv}", options),
                                SD_BUS_RESULT("i", exit_status, "s", stdout, "s", stderr),
                                method_run_captured, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Start", SD_BUS_ARGS("as", argv, "a{sv}", options),
                                SD_BUS_RESULT("o", process), method_start, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Mount", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", path), method_mount,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Unmount", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_unmount,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        /* Copy/CopyOut (objects/copy-dbus.c) */
        SD_BUS_METHOD_WITH_ARGS("Copy", SD_BUS_ARGS("h", source, "s", destination, "a{sv}", options),
                                SD_BUS_NO_RESULT, kiln_copy_method_copy, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CopyOut", SD_BUS_ARGS("s", path, "h", fd, "a{sv}", options),
                                SD_BUS_NO_RESULT, kiln_copy_method_copy_out, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};
