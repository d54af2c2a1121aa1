/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <sys/stat.h>

#include "base/archive-load.h"
#include "bus/bus-args.h"
#include "bus/bus-properties.h"
#include "import/layer-digest.h"
#include "objects/builder-dbus.h"
#include "objects/image-dbus-private.h"
#include "objects/process.h"

/* How long a Push waits for a reader that reads nothing before it gives up. */
#define PUSH_WRITE_TIMEOUT_SEC 60

void kiln_images_free(KilnImages *images)
{
        GHashTableIter iter;
        KilnImage *image;

        if (!images)
                return;
        for (size_t i = 0; i < G_N_ELEMENTS(images->slots); i++)
                sd_bus_slot_unref(images->slots[i]);
        /* A commit or push thread still running reads the store: kilnd is exiting, leave it be. */
        g_hash_table_iter_init(&iter, images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image))
                if (image->pushes > 0)
                        return;
        if (images->commits > 0)
                return;
        g_hash_table_unref(images->by_id);
        kiln_image_store_free(images->store);
        g_free(images);
}

static char *image_object_path(const char *id)
{
        return g_strconcat(KILN_IMAGE_PATH_PREFIX "/", id, NULL);
}

static GPtrArray *all_images(KilnImages *images)
{
        GPtrArray *all = g_ptr_array_new();
        GHashTableIter iter;
        gpointer image;

        g_hash_table_iter_init(&iter, images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, &image))
                g_ptr_array_add(all, image);
        return all;
}

/* Removes the blobs no image names, unless a commit is writing some that no image names yet. */
void kiln_images_collect(KilnImages *images)
{
        g_autoptr(GPtrArray) all = NULL;

        if (images->commits > 0) {
                images->collect_pending = TRUE;
                return;
        }
        images->collect_pending = FALSE;
        all = all_images(images);
        kiln_image_store_collect(images->store, all);
}

guint64 kiln_images_user_bytes(KilnManager *m, uid_t owner)
{
        g_autoptr(GPtrArray) all = all_images(m->images);

        return kiln_images_bytes(m->images->store, all, owner);
}

guint kiln_images_count_owned(KilnImages *images, uid_t owner)
{
        GHashTableIter iter;
        KilnImage *image;
        guint n = 0;

        g_hash_table_iter_init(&iter, images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image))
                n += image->owner == owner;
        return n;
}

/* An upper bound of an image's entry in GetManagedObjects (as builder_listing_bytes, manager-dbus.c): each
 * string costs at most its length + 8 bytes; the fixed part (path, the standard interfaces, 8 property
 * names, types and fixed-size values, padding) stays under 1 KiB. */
static guint64 image_listing_bytes(const KilnImage *image)
{
        guint64 n = 1024 + strlen(image->object_path) + strlen(image->id) + 16;

        n += (image->manifest_digest ? strlen(image->manifest_digest) : 0) + 8;
        n += (image->config_json ? strlen(image->config_json) : 0) + 8;
        for (char **name = image->names; name && *name; name++)
                n += strlen(*name) + 8;
        for (guint i = 0; i < image->layers->len; i++)
                n += strlen(((KilnImageLayer *)image->layers->pdata[i])->digest) + 8;
        return n;
}

guint64 kiln_images_listing_bytes(KilnManager *m, sd_bus_message *caller)
{
        GHashTableIter iter;
        KilnImage *image;
        guint64 n = 0;

        g_hash_table_iter_init(&iter, m->images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image))
                if (kiln_auth_may_access(m->auth, caller, image->owner))
                        n += image_listing_bytes(image);
        return n;
}

gboolean kiln_image_has_name(const KilnImage *image, const char *name)
{
        return image->names && g_strv_contains((const char *const *)image->names, name);
}

KilnImage *kiln_images_find(KilnManager *m, sd_bus_message *msg, const char *name_or_id, GError **error)
{
        KilnImages *images = m->images;
        g_autofree char *name = kiln_image_normalize_name("name", name_or_id, NULL);
        KilnImage *image, *own = NULL, *other = NULL, *prefix = NULL;
        size_t len = strlen(name_or_id);
        const KilnCreds *creds = NULL;
        gboolean ambiguous = FALSE;
        GHashTableIter iter;

        (void)kiln_auth_get_caller(m->auth, msg, &creds, NULL);
        g_hash_table_iter_init(&iter, images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image)) {
                if (!kiln_auth_may_access(m->auth, msg, image->owner))
                        continue; /* someone else's image answers like a missing one */
                if (g_str_equal(image->id, name_or_id))
                        return image;
                if (name && kiln_image_has_name(image, name)) {
                        if (creds && image->owner == creds->uid)
                                own = image;
                        else
                                other = image;
                }
                if (len >= KILN_ID_MIN_PREFIX && len < KILN_ID_LENGTH &&
                    strncmp(image->id, name_or_id, len) == 0) {
                        ambiguous = prefix != NULL;
                        prefix = image;
                }
        }
        if (own || other)
                return own ? own : other;
        if (prefix && !ambiguous)
                return prefix;
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_NOT_FOUND, "No image '%s'%s", name_or_id,
                    ambiguous ? " (the id prefix is ambiguous)" : "");
        return NULL;
}

/* Signals about images, to the watchers that may see them (as builder-dbus.c does for builders). */

typedef struct {
        const KilnImage *image;
        ImageSignal kind;
} ImageSignalRequest;

static int append_layers(sd_bus_message *reply, const KilnImage *image)
{
        int r = sd_bus_message_open_container(reply, 'a', "s");

        for (guint i = 0; r >= 0 && i < image->layers->len; i++)
                r = sd_bus_message_append_basic(reply, 's',
                                                ((KilnImageLayer *)image->layers->pdata[i])->digest);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int append_strv_variant(sd_bus_message *s, const char *name, char **v, const KilnImage *layers_of)
{
        int r = sd_bus_message_open_container(s, 'e', "sv");

        if (r >= 0)
                r = sd_bus_message_append_basic(s, 's', name);
        if (r >= 0)
                r = sd_bus_message_open_container(s, 'v', "as");
        if (r >= 0)
                r = layers_of ? append_layers(s, layers_of) : sd_bus_message_append_strv(s, v);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        return r;
}

static int append_image_properties(sd_bus_message *s, const KilnImage *image, gboolean all)
{
        int r = sd_bus_message_open_container(s, 'a', "{sv}");

        if (r >= 0 && all)
                r = sd_bus_message_append(s, "{sv}{sv}{sv}{sv}{sv}{sv}", "Id", "s", image->id, "Owner", "u",
                                          (uint32_t)image->owner, "Digest", "s", image->manifest_digest,
                                          "Created", "t", (uint64_t)image->created_usec, "Size", "t",
                                          (uint64_t)image->size, "Config", "s", image->config_json);
        if (r >= 0)
                r = append_strv_variant(s, "Names", image->names, NULL);
        if (r >= 0 && all)
                r = append_strv_variant(s, "Layers", NULL, image);
        if (r >= 0)
                r = sd_bus_message_close_container(s);
        return r;
}

static int build_image_signal(KilnManager *m, const char *destination, gconstpointer data,
                              sd_bus_message **ret)
{
        const ImageSignalRequest *req = data;
        const KilnImage *image = req->image;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int r;

        if (req->kind == IMAGE_NAMES_CHANGED)
                r = sd_bus_message_new_signal(m->bus, &s, image->object_path,
                                              "org.freedesktop.DBus.Properties", "PropertiesChanged");
        else
                r = sd_bus_message_new_signal(
                        m->bus, &s, KILN_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                        req->kind == IMAGE_ADDED ? "InterfacesAdded" : "InterfacesRemoved");
        if (r >= 0)
                r = sd_bus_message_set_destination(s, destination);
        if (r < 0)
                return r;
        switch (req->kind) {
        case IMAGE_NAMES_CHANGED:
                r = sd_bus_message_append_basic(s, 's', KILN_IMAGE_INTERFACE);
                if (r >= 0)
                        r = append_image_properties(s, image, FALSE);
                if (r >= 0)
                        r = sd_bus_message_append_strv(s, NULL);
                break;
        case IMAGE_ADDED:
                r = sd_bus_message_append_basic(s, 'o', image->object_path);
                if (r >= 0)
                        r = sd_bus_message_open_container(s, 'a', "{sa{sv}}");
                if (r >= 0)
                        r = sd_bus_message_append(s, "{sa{sv}}{sa{sv}}{sa{sv}}", "org.freedesktop.DBus.Peer",
                                                  0, "org.freedesktop.DBus.Introspectable", 0,
                                                  "org.freedesktop.DBus.Properties", 0);
                if (r >= 0)
                        r = sd_bus_message_open_container(s, 'e', "sa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append_basic(s, 's', KILN_IMAGE_INTERFACE);
                if (r >= 0)
                        r = append_image_properties(s, image, TRUE);
                if (r >= 0)
                        r = sd_bus_message_close_container(s);
                if (r >= 0)
                        r = sd_bus_message_close_container(s);
                break;
        case IMAGE_REMOVED:
                r = sd_bus_message_append(s, "oas", image->object_path, 4, "org.freedesktop.DBus.Peer",
                                          "org.freedesktop.DBus.Introspectable",
                                          "org.freedesktop.DBus.Properties", KILN_IMAGE_INTERFACE);
                break;
        }
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&s);
        return 0;
}

void kiln_images_emit(KilnManager *m, const KilnImage *image, ImageSignal kind)
{
        ImageSignalRequest req = {image, kind};

        kiln_manager_send_to_watchers(m, image->owner, build_image_signal, &req);
}

/* A name belongs to one image of an owner: given to another, it moves (as docker tag does). */
void kiln_images_take_name(KilnManager *m, KilnImage *to, const char *name)
{
        GHashTableIter iter;
        KilnImage *image;
        g_autoptr(GError) error = NULL;

        g_hash_table_iter_init(&iter, m->images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image)) {
                g_autoptr(GPtrArray) kept = NULL;
                if (image == to || image->owner != to->owner || !kiln_image_has_name(image, name))
                        continue;
                kept = g_ptr_array_new();
                for (char **n = image->names; *n; n++)
                        if (!g_str_equal(*n, name))
                                g_ptr_array_add(kept, g_strdup(*n));
                g_ptr_array_add(kept, NULL);
                g_strfreev(image->names);
                image->names = (char **)g_ptr_array_free(g_steal_pointer(&kept), FALSE);
                if (!kiln_image_store_save(m->images->store, image, &error)) {
                        g_warning("Cannot save image %s: %s", image->id, error->message);
                        g_clear_error(&error);
                }
                kiln_images_emit(m, image, IMAGE_NAMES_CHANGED);
        }
        if (!kiln_image_has_name(to, name)) {
                guint n = to->names ? g_strv_length(to->names) : 0;
                to->names = g_renew(char *, to->names, n + 2);
                to->names[n] = g_strdup(name);
                to->names[n + 1] = NULL;
        }
}

void kiln_images_add(KilnManager *m, KilnImage *image)
{
        image->manager = m;
        image->object_path = image_object_path(image->id);
        g_hash_table_insert(m->images->by_id, image->id, image);
}

/* The object tree: /org/kiln/Builder1/image/<id>, visible to those who may see the owner's objects. */

static int image_object_find(sd_bus *bus, const char *path, G_GNUC_UNUSED const char *interface,
                             void *userdata, void **found, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *m = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        const char *id;
        KilnImage *image;

        if (!g_str_has_prefix(path, KILN_IMAGE_PATH_PREFIX "/"))
                return 0;
        id = path + strlen(KILN_IMAGE_PATH_PREFIX "/");
        image = kiln_hex64_is_valid(id) ? g_hash_table_lookup(m->images->by_id, id) : NULL;
        if (!image || (current && !kiln_auth_may_access(m->auth, current, image->owner)))
                return 0;
        *found = image;
        return 1;
}

static int image_node_enumerator(sd_bus *bus, G_GNUC_UNUSED const char *path, void *userdata, char ***nodes,
                                 G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *m = userdata;
        sd_bus_message *current = sd_bus_get_current_message(bus);
        g_autoptr(GPtrArray) paths = g_ptr_array_new();
        GHashTableIter iter;
        KilnImage *image;

        if (current)
                kiln_auth_track_caller(m->auth, current);
        g_hash_table_iter_init(&iter, m->images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image))
                if (!current || kiln_auth_may_access(m->auth, current, image->owner))
                        g_ptr_array_add(paths, strdup(image->object_path)); /* sd-bus frees with free() */
        g_ptr_array_add(paths, NULL);
        *nodes = (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
        return 1;
}

static KilnManager *manager_of(const KilnImage *image)
{
        return image->manager;
}

static int property_get_layers(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                               G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                               sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        return append_layers(reply, userdata);
}

gboolean kiln_images_read_options(sd_bus_message *msg, const KilnConfig *limits, OptionSlot *slots,
                                  size_t n_slots, GError **error)
{
        unsigned n = 0;
        int r = sd_bus_message_enter_container(msg, 'a', "{sv}");

        while (r >= 0 && (r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key;
                OptionSlot *slot = NULL;
                char sig[2] = {0, 0};

                if (sd_bus_message_read_basic(msg, 's', &key) < 0)
                        return kiln_bus_read_failed(-EINVAL, "options", error);
                if (!kiln_check_array_limit("options", ++n, limits, error))
                        return FALSE;
                for (size_t i = 0; i < n_slots; i++)
                        if (g_str_equal(slots[i].key, key))
                                slot = &slots[i];
                if (!slot)
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid options: unknown key '%.64s'", key);
                sig[0] = slot->type;
                if (slot->given)
                        *slot->given = TRUE;
                if (!kiln_bus_enter_variant(msg, slot->key, sig, error))
                        return FALSE;
                if (slot->type == 'b') {
                        int b;
                        r = sd_bus_message_read_basic(msg, 'b', &b);
                        *(gboolean *)slot->value = b;
                } else if (slot->type == 't') {
                        r = sd_bus_message_read_basic(msg, 't', slot->value);
                } else {
                        const char *s;
                        r = sd_bus_message_read_basic(msg, 's', &s);
                        if (r >= 0 && !kiln_check_string_limit(slot->key, s, limits, error))
                                return FALSE;
                        if (r >= 0) {
                                g_free(*(char **)slot->value);
                                *(char **)slot->value = g_strdup(s);
                        }
                }
                if (r < 0)
                        return kiln_bus_read_failed(r, slot->key, error);
                if (!kiln_bus_exit_variant(msg, slot->key, error))
                        return FALSE;
                r = sd_bus_message_exit_container(msg);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return kiln_bus_read_failed(r, "options", error);
        return TRUE;
}

static gboolean image_in_use(KilnManager *m, const KilnImage *image, char **ret_builder)
{
        GHashTableIter iter;
        KilnBuilder *b;

        g_hash_table_iter_init(&iter, m->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b)) {
                g_autofree char *name = kiln_image_normalize_name("from", b->from, NULL);
                size_t len = strlen(b->from);
                /* `from` as the caller gave it: the id, a prefix of it, or a name (which may have moved to
                 * another image of the owner since: then both count as used). */
                if ((len >= KILN_ID_MIN_PREFIX && strncmp(image->id, b->from, len) == 0 &&
                     len <= KILN_ID_LENGTH) ||
                    (name && kiln_image_has_name(image, name))) {
                        *ret_builder = g_strdup(b->name);
                        return TRUE;
                }
        }
        return FALSE;
}

int kiln_images_reply_error(sd_bus_message *msg, const GError *error)
{
        _cleanup_(sd_bus_error_free) sd_bus_error bus_error = SD_BUS_ERROR_NULL;

        kiln_error_to_bus(error, &bus_error);
        return sd_bus_reply_method_error(msg, &bus_error);
}

/* Image.Remove: the image's record goes; builders made from it keep their layers (they are the storage's,
 * not the image's), so even a forced removal breaks none of them. */
static int method_image_remove(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnImage *image = userdata;
        KilnManager *m = manager_of(image);
        g_autoptr(GError) local = NULL;
        g_autofree char *user = NULL;
        gboolean force = FALSE;
        OptionSlot slots[] = {{"force", 'b', &force}};

        if (!kiln_images_read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
                return kiln_error_to_bus(local, error);
        if (image->pushes > 0)
                return sd_bus_error_setf(error, KILN_ERROR_BUSY, "Image %.12s is being pushed", image->id);
        if (!force && image_in_use(m, image, &user))
                return sd_bus_error_setf(error, KILN_ERROR_BUSY,
                                         "Image %.12s is used by builder '%s' (force removes it anyway; the "
                                         "builder keeps working)",
                                         image->id, user);
        if (!kiln_image_store_remove(m->images->store, image->id, &local))
                return kiln_error_to_bus(local, error);
        kiln_images_emit(m, image, IMAGE_REMOVED);
        g_hash_table_remove(m->images->by_id, image->id);
        kiln_images_collect(m->images);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_image_tag(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnImage *image = userdata;
        KilnManager *m = manager_of(image);
        g_autoptr(GError) local = NULL;
        g_autofree char *name = NULL;
        const char *arg;
        int r;

        r = sd_bus_message_read(msg, "s", &arg);
        if (r < 0)
                return r;
        if (!kiln_check_string_limit("name", arg, m->config, &local) ||
            !(name = kiln_image_normalize_name("name", arg, &local)))
                return kiln_error_to_bus(local, error);
        if (kiln_image_has_name(image, name))
                return sd_bus_reply_method_return(msg, NULL);
        if (image->names && g_strv_length(image->names) >= m->config->max_array_length)
                return sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                         "Invalid name: image %.12s already has %u names, the limit "
                                         "(MaxArrayLength)",
                                         image->id, m->config->max_array_length);
        kiln_images_take_name(m, image, name);
        if (!kiln_image_store_save(m->images->store, image, &local)) {
                local->domain = KILN_ERROR;
                local->code = KILN_ERROR_CODE_FAILED;
                return kiln_error_to_bus(local, error);
        }
        kiln_images_emit(m, image, IMAGE_NAMES_CHANGED);
        return sd_bus_reply_method_return(msg, NULL);
}

/* Push: checked, authorized (run), then written by a thread; the caller's descriptor is the only thing
 * written, so the file is the caller's, on the caller's quota. */
typedef struct {
        KilnManager *manager;
        sd_bus_message *message;
        char *image_id;
        char *format;
        char *name;
        int fd;
        uid_t caller_uid;
        gboolean reserved; /* holds one of the caller's ProcessesPerUser slots */
        KilnImage *copy;   /* what the thread reads */
        GCancellable *cancellable;
} PushRequest;

static void push_request_free(gpointer data)
{
        PushRequest *req = data;

        if (req->reserved)
                kiln_manager_release_process(req->manager, req->caller_uid);
        if (req->message)
                sd_bus_message_unref(req->message);
        kiln_close_fdp(&req->fd);
        g_free(req->image_id);
        g_free(req->format);
        g_free(req->name);
        kiln_image_free(req->copy);
        g_clear_object(&req->cancellable);
        g_free(req);
}

static void push_thread(GTask *task, G_GNUC_UNUSED gpointer source, gpointer data, GCancellable *cancellable)
{
        PushRequest *req = data;
        GError *error = NULL;

        if (kiln_image_push(req->manager->images->store, req->copy, req->format, req->name, req->fd,
                            PUSH_WRITE_TIMEOUT_SEC, cancellable, &error))
                g_task_return_boolean(task, TRUE);
        else
                g_task_return_error(task, error);
}

static void push_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        PushRequest *req = data;
        g_autoptr(GError) error = NULL;
        KilnImage *image = g_hash_table_lookup(req->manager->images->by_id, req->image_id);

        if (image)
                image->pushes--;
        if (!g_task_propagate_boolean(G_TASK(result), &error)) {
                if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                        kiln_images_reply_error(req->message, error);
        } else {
                sd_bus_reply_method_return(req->message, NULL);
        }
        push_request_free(req);
}

static void push_authorized(sd_bus_message *msg, const sd_bus_error *denied, gpointer data)
{
        PushRequest *req = data;
        PushRequest *job;
        KilnImage *image;
        GTask *task;

        if (denied) {
                sd_bus_reply_method_error(msg, denied);
                return;
        }
        image = g_hash_table_lookup(req->manager->images->by_id, req->image_id);
        if (!image) {
                sd_bus_reply_method_errorf(msg, KILN_ERROR_NOT_FOUND, "Image %.12s was removed",
                                           req->image_id);
                return;
        }
        /* The request belongs to the authorization (freed when it returns); the thread gets its own. */
        job = g_new0(PushRequest, 1);
        *job = *req;
        job->message = sd_bus_message_ref(msg);
        job->image_id = g_strdup(req->image_id);
        job->format = g_strdup(req->format);
        job->name = g_strdup(req->name);
        job->fd = kiln_steal_fd(&req->fd);
        job->copy = kiln_image_copy(image);
        job->cancellable = req->cancellable ? g_object_ref(req->cancellable) : NULL;
        req->reserved = FALSE;
        image->pushes++;
        task = g_task_new(NULL, job->cancellable, push_done, job);
        g_task_set_task_data(task, job, NULL);
        g_task_run_in_thread(task, push_thread);
        g_object_unref(task);
}

static int method_image_push(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnImage *image = userdata;
        KilnManager *m = manager_of(image);
        g_autoptr(GError) local = NULL;
        const KilnCreds *creds;
        const char *format;
        const char *details[] = {"image", image->names && image->names[0] ? image->names[0] : image->id,
                                 NULL};
        PushRequest *req;
        struct stat st;
        int fd, flags, r;

        r = kiln_auth_get_caller(m->auth, msg, &creds, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "hs", &fd, &format);
        if (r < 0)
                return r;
        if (!kiln_archive_load(&local))
                return kiln_error_to_bus(local, error);
        req = g_new0(PushRequest, 1);
        req->manager = m;
        req->fd = -1;
        req->caller_uid = creds->uid;
        req->image_id = g_strdup(image->id);
        {
                OptionSlot slots[] = {{"name", 's', &req->name}};
                if (!kiln_images_read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
                        goto fail;
        }
        if (!g_str_equal(format, "oci-archive") && !g_str_equal(format, "docker-archive")) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid format: '%.64s' is not 'oci-archive' or 'docker-archive'", format);
                goto fail;
        }
        req->format = g_strdup(format);
        /* docker-archive's RepoTags hold NAME:TAG; an OCI layout's ref.name may be a tag alone. */
        if (req->name && g_str_equal(format, "docker-archive")) {
                g_autofree char *n = kiln_image_normalize_name("name", req->name, &local);
                if (!n)
                        goto fail;
                g_free(req->name);
                req->name = g_steal_pointer(&n);
        } else if (req->name) {
                gboolean ok = *req->name && strlen(req->name) <= 255 && g_ascii_isalnum(req->name[0]);
                for (const char *p = req->name; ok && *p; p++)
                        ok = g_ascii_isalnum(*p) || strchr("._:/-", *p);
                if (!ok) {
                        kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                  "Invalid name: '%.64s' is not a reference (letters, digits, '.', '_', "
                                  "':', '/', "
                                  "'-')",
                                  req->name);
                        goto fail;
                }
        }
        /* Only what a stream can go to: a file, a pipe or a socket the caller opened for writing. A terminal
         * or a device is refused (kilnd writes nothing but its own stream into the descriptor). */
        flags = fcntl(fd, F_GETFL);
        if (fstat(fd, &st) < 0 || flags < 0 ||
            !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) ||
            (flags & O_ACCMODE) == O_RDONLY) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid fd: not a file, pipe or socket open for writing");
                goto fail;
        }
        req->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (req->fd < 0) {
                g_set_error(&local, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot duplicate fd: %s",
                            g_strerror(errno));
                goto fail;
        }
        /* A push holds a thread and the caller's descriptor: it takes one of the caller's process slots. */
        if (!kiln_manager_reserve_process(m, creds->uid, &local))
                goto fail;
        req->reserved = TRUE;
        req->cancellable = kiln_auth_caller_cancellable(m->auth, msg);
        return kiln_auth_check(m->auth, msg, KILN_ACTION_RUN, details, push_authorized, req,
                               push_request_free);

fail:
        push_request_free(req);
        return kiln_error_to_bus(local, error);
}

/* CreateBuilder from a stored image (manager.h): the image's oci-archive (tar layers, not compressed:
 * the import reads them at once) written by a thread into an unlinked file of kilnd's, which is then
 * imported as any archive is: verified, each layer stored once. */
static char *find_stored_image(KilnManager *m, sd_bus_message *msg, const char *name)
{
        KilnImage *image = kiln_images_find(m, msg, name, NULL);

        return image ? g_strdup(image->id) : NULL;
}

/* A second `from` of a stored image needs no archive and no helper: the image is kilnd's own (its
 * config and every diff_id were written or verified by kilnd, and the caller may see it), and when
 * each of its layers is stored as a tree already, the result of exporting and importing it is known:
 * its layers by diff_id, its config. An import would write nothing and read only what kilnd wrote. */
static KilnImportedImage *stored_image_imported(KilnManager *m, const char *id)
{
        KilnImage *image = g_hash_table_lookup(m->images->by_id, id);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GPtrArray) layers = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(JsonObject) result = json_object_new();
        KilnImportedImage *imported;
        JsonObject *config;
        JsonNode *root;

        if (!image || !image->config_json || !image->manifest_digest ||
            !json_parser_load_from_data(parser, image->config_json, -1, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                return NULL;
        for (guint i = 0; i < image->layers->len; i++) {
                const KilnImageLayer *l = image->layers->pdata[i];
                const char *hex =
                        l->diff_id && g_str_has_prefix(l->diff_id, "sha256:") ? l->diff_id + 7 : NULL;

                if (!hex || !kiln_hex64_is_valid(hex) || !kiln_storage_layer_exists(m->storage, hex))
                        return NULL;
                g_ptr_array_add(layers, g_strdup(hex));
        }
        g_ptr_array_add(layers, NULL);
        /* What kiln-import prints of an image config (image-read.h), from the same document. */
        config = json_node_get_object(root);
        for (const char *const *k = (const char *const[]){"config", "history", "os", "architecture", NULL};
             *k; k++) {
                JsonNode *n = json_object_get_member(config, *k);
                if (n && (JSON_NODE_HOLDS_OBJECT(n) || JSON_NODE_HOLDS_ARRAY(n) || JSON_NODE_HOLDS_VALUE(n)))
                        json_object_set_member(result, *k, json_node_copy(n));
        }
        imported = g_new0(KilnImportedImage, 1);
        imported->layers = (char **)g_ptr_array_free(g_steal_pointer(&layers), FALSE);
        imported->digest = g_strdup(image->manifest_digest);
        imported->result = json_node_init_object(json_node_alloc(), result);
        return imported;
}

typedef struct {
        KilnManager *manager;
        char *image_id;
        KilnImage *copy;
        int fd;
} ExportJob;

static void export_job_free(gpointer data)
{
        ExportJob *job = data;
        KilnImage *image = g_hash_table_lookup(job->manager->images->by_id, job->image_id);

        if (image)
                image->pushes--;
        kiln_close_fdp(&job->fd);
        g_free(job->image_id);
        kiln_image_free(job->copy);
        g_free(job);
}

static void export_thread(GTask *task, G_GNUC_UNUSED gpointer source, gpointer data,
                          GCancellable *cancellable)
{
        ExportJob *job = data;
        GError *error = NULL;

        if (!kiln_image_push(job->manager->images->store, job->copy, "oci-archive", NULL, job->fd,
                             PUSH_WRITE_TIMEOUT_SEC, cancellable, &error) ||
            lseek(job->fd, 0, SEEK_SET) < 0) {
                if (!error)
                        g_set_error(&error, G_IO_ERROR, g_io_error_from_errno(errno), "lseek: %s",
                                    g_strerror(errno));
                g_task_return_error(task, error);
                return;
        }
        g_task_return_int(task, kiln_steal_fd(&job->fd));
}

static void export_stored_image(KilnManager *m, const char *id, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer data)
{
        KilnImage *image = g_hash_table_lookup(m->images->by_id, id);
        g_autoptr(GError) error = NULL;
        ExportJob *job;
        GTask *task = g_task_new(NULL, cancellable, callback, data);

        if (!image) {
                g_task_return_new_error(task, KILN_ERROR, KILN_ERROR_CODE_NOT_FOUND,
                                        "Image %.12s was removed", id);
                g_object_unref(task);
                return;
        }
        job = g_new0(ExportJob, 1);
        job->manager = m;
        job->image_id = g_strdup(id);
        job->copy = kiln_image_copy(image);
        job->copy->compression = KILN_COMPRESSION_NONE;
        job->fd = kiln_image_store_tmpfile(m->images->store, &error);
        image->pushes++;
        g_task_set_task_data(task, job, export_job_free);
        if (job->fd < 0)
                g_task_return_error(task, g_steal_pointer(&error));
        else
                g_task_run_in_thread(task, export_thread);
        g_object_unref(task);
}

static int finish_export(GAsyncResult *result, GError **error)
{
        gssize fd = g_task_propagate_int(G_TASK(result), error);

        return fd < 0 ? -1 : (int)fd;
}

static const sd_bus_vtable image_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", NULL, offsetof(KilnImage, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Names", "as", kiln_bus_property_get_strv, offsetof(KilnImage, names),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Owner", "u", NULL, offsetof(KilnImage, owner), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Digest", "s", NULL, offsetof(KilnImage, manifest_digest),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Created", "t", NULL, offsetof(KilnImage, created_usec),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "t", NULL, offsetof(KilnImage, size), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Layers", "as", property_get_layers, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Config", "s", NULL, offsetof(KilnImage, config_json), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Push", SD_BUS_ARGS("h", fd, "s", format, "a{sv}", options),
                                SD_BUS_NO_RESULT, method_image_push, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Tag", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT, method_image_tag,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Remove", SD_BUS_ARGS("a{sv}", options), SD_BUS_NO_RESULT,
                                method_image_remove, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* Manager.ListImages and GetImage. */

static int compare_images(gconstpointer a, gconstpointer b)
{
        const KilnImage *x = *(KilnImage *const *)a, *y = *(KilnImage *const *)b;

        if (x->created_usec != y->created_usec)
                return x->created_usec > y->created_usec ? -1 : 1;
        return strcmp(x->id, y->id);
}

static int method_list_images(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnManager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) visible = g_ptr_array_new();
        GHashTableIter iter;
        KilnImage *image;
        guint64 size = 64;
        int r;

        kiln_auth_track_caller(m->auth, msg);
        g_hash_table_iter_init(&iter, m->images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image))
                if (kiln_auth_may_access(m->auth, msg, image->owner)) {
                        g_ptr_array_add(visible, image);
                        size += strlen(image->object_path) + 64 + 48;
                        for (char **n = image->names; n && *n; n++)
                                size += strlen(*n) + 8;
                }
        if (size > KILN_BUS_REPLY_BYTES_MAX)
                return sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                         "The list of %u images would not fit in one bus message",
                                         visible->len);
        g_ptr_array_sort(visible, compare_images);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sasuo)");
        for (guint i = 0; r >= 0 && i < visible->len; i++) {
                image = visible->pdata[i];
                r = sd_bus_message_open_container(reply, 'r', "sasuo");
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 's', image->id);
                if (r >= 0)
                        r = sd_bus_message_append_strv(reply, image->names);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "uo", (uint32_t)image->owner, image->object_path);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_image(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnManager *m = userdata;
        g_autoptr(GError) local = NULL;
        const char *name_or_id;
        KilnImage *image;
        int r;

        kiln_auth_track_caller(m->auth, msg);
        r = sd_bus_message_read(msg, "s", &name_or_id);
        if (r < 0)
                return r;
        if (!*name_or_id)
                return sd_bus_error_set(error, KILN_ERROR_INVALID_ARGUMENT,
                                        "Invalid name_or_id: it is empty");
        if (!kiln_check_string_limit("name_or_id", name_or_id, m->config, &local))
                return kiln_error_to_bus(local, error);
        image = kiln_images_find(m, msg, name_or_id, &local);
        if (!image)
                return kiln_error_to_bus(local, error);
        return sd_bus_reply_method_return(msg, "o", image->object_path);
}

static const sd_bus_vtable manager_images_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("ListImages", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(sasuo)", images),
                                method_list_images, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetImage", SD_BUS_ARGS("s", name_or_id), SD_BUS_RESULT("o", image),
                                method_get_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int kiln_images_register(KilnManager *m)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) loaded = NULL;
        KilnImages *images;
        int r;

        images = g_new0(KilnImages, 1);
        images->by_id =
                g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)kiln_image_free);
        m->images = images;
        images->store = kiln_image_store_new(m->config->state_dir, &error);
        if (!images->store) {
                g_warning("Cannot open the image store: %s", error->message);
                return -EIO;
        }
        m->find_stored_image = find_stored_image;
        m->images_user_bytes = kiln_images_user_bytes;
        m->export_stored_image = export_stored_image;
        m->finish_export = finish_export;
        m->stored_image_imported = stored_image_imported;
        loaded = kiln_image_store_load(images->store);
        for (guint i = 0; i < loaded->len; i++)
                kiln_images_add(m, g_steal_pointer(&loaded->pdata[i]));
        kiln_images_collect(images);

        r = sd_bus_add_object_vtable(m->bus, &images->slots[0], KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE,
                                     manager_images_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &images->slots[1], KILN_BUILDER_PATH_PREFIX,
                                               KILN_BUILDER_INTERFACE, kiln_builder_commit_vtable,
                                               kiln_builder_object_find, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &images->slots[2], KILN_IMAGE_PATH_PREFIX,
                                               KILN_IMAGE_INTERFACE, image_vtable, image_object_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, &images->slots[3], KILN_IMAGE_PATH_PREFIX,
                                               image_node_enumerator, m);
        return r;
}
