/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <sys/stat.h>

#include "bus/bus-args.h"
#include "bus/bus-properties.h"
#include "import/layer-digest.h"
#include "objects/builder-dbus.h"
#include "objects/image-dbus.h"
#include "objects/process.h"

/* How long a Push waits for a reader that reads nothing before it gives up. */
#define PUSH_WRITE_TIMEOUT_SEC 60

struct KilnImages {
        KilnImageStore *store;
        GHashTable *by_id; /* id → KilnImage (owned) */
        guint commits;     /* commits writing blobs: no blob is collected meanwhile */
        gboolean collect_pending;
        sd_bus_slot *slots[5];
};

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
static void collect(KilnImages *images)
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

static guint count_owned(KilnImages *images, uid_t owner)
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

static gboolean has_name(const KilnImage *image, const char *name)
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
                if (name && has_name(image, name)) {
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

typedef enum { IMAGE_ADDED, IMAGE_REMOVED, IMAGE_NAMES_CHANGED } ImageSignal;

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

static void emit_image(KilnManager *m, const KilnImage *image, ImageSignal kind)
{
        ImageSignalRequest req = {image, kind};

        kiln_manager_send_to_watchers(m, image->owner, build_image_signal, &req);
}

/* A name belongs to one image of an owner: given to another, it moves (as docker tag does). */
static void take_name(KilnManager *m, KilnImage *to, const char *name)
{
        GHashTableIter iter;
        KilnImage *image;
        g_autoptr(GError) error = NULL;

        g_hash_table_iter_init(&iter, m->images->by_id);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&image)) {
                g_autoptr(GPtrArray) kept = NULL;
                if (image == to || image->owner != to->owner || !has_name(image, name))
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
                emit_image(m, image, IMAGE_NAMES_CHANGED);
        }
        if (!has_name(to, name)) {
                guint n = to->names ? g_strv_length(to->names) : 0;
                to->names = g_renew(char *, to->names, n + 2);
                to->names[n] = g_strdup(name);
                to->names[n + 1] = NULL;
        }
}

static void add_image(KilnManager *m, KilnImage *image)
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

/* Options a{sv} with boolean and string members only; unknown keys are refused by name. */
typedef struct {
        const char *key;
        char type; /* 'b', 's', 't' */
        void *value;
        gboolean *given; /* set when the key is there (may be NULL) */
} OptionSlot;

static gboolean read_options(sd_bus_message *msg, const KilnConfig *limits, OptionSlot *slots,
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
                    (name && has_name(image, name))) {
                        *ret_builder = g_strdup(b->name);
                        return TRUE;
                }
        }
        return FALSE;
}

static int reply_error(sd_bus_message *msg, const GError *error)
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

        if (!read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
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
        emit_image(m, image, IMAGE_REMOVED);
        g_hash_table_remove(m->images->by_id, image->id);
        collect(m->images);
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
        if (has_name(image, name))
                return sd_bus_reply_method_return(msg, NULL);
        if (image->names && g_strv_length(image->names) >= m->config->max_array_length)
                return sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                         "Invalid name: image %.12s already has %u names, the limit "
                                         "(MaxArrayLength)",
                                         image->id, m->config->max_array_length);
        take_name(m, image, name);
        if (!kiln_image_store_save(m->images->store, image, &local)) {
                local->domain = KILN_ERROR;
                local->code = KILN_ERROR_CODE_FAILED;
                return kiln_error_to_bus(local, error);
        }
        emit_image(m, image, IMAGE_NAMES_CHANGED);
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
                        reply_error(req->message, error);
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
        req = g_new0(PushRequest, 1);
        req->manager = m;
        req->fd = -1;
        req->caller_uid = creds->uid;
        req->image_id = g_strdup(image->id);
        {
                OptionSlot slots[] = {{"name", 's', &req->name}};
                if (!read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
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

/* Builder.Commit: checked, authorized (create, as DESIGN.md's table says), then the layers are written
 * by a thread from descriptors; the image is recorded and exported back on the main thread. */

typedef struct {
        KilnManager *manager;
        sd_bus_message *message;
        char *builder_id;
        char *builder_name;
        uid_t caller_uid;
        char *name; /* normalized, or NULL */
        char *compression_name;
        char *format;
        guint64 timestamp;
        gboolean has_timestamp;
        gboolean squash;
        KilnCompression compression;
        guint64 config_bytes_max; /* [Limits] ImageConfigBytes */

        /* for the thread */
        char *upper_path;    /* the builder's overlay upper dir, or its mounted root with squash */
        char **base_paths;   /* the base layers' directories, bottom first (none: scratch, squash) */
        char **base_digests; /* their digests in the layer store */
        char *base_history;  /* the base image's history (a JSON array), or NULL */
        char *os, *architecture;
        char *stop_signal;
        char **exposed_ports;
        gboolean base_shifted;
        GArray *uid_map; /* host → container for the new layer (NULL: as they are) */
        GArray *gid_map;
        gboolean rootfs_held; /* squash: the builder's root is held mounted */
        char **env, **entrypoint, **cmd, **labels, **volumes;
        char *working_dir, *user, *from;
        gint64 created;

        /* results */
        GPtrArray *layers;
        char *config_json;
        char *config_digest;
        char *manifest_digest;
        guint64 manifest_size;
} CommitJob;

static void commit_job_free(gpointer data)
{
        CommitJob *job = data;

        if (job->rootfs_held) {
                KilnBuilder *b = g_hash_table_lookup(job->manager->builders, job->builder_id);
                if (b)
                        kiln_manager_release_rootfs(job->manager, b);
        }
        if (job->message)
                sd_bus_message_unref(job->message);
        g_free(job->builder_id);
        g_free(job->builder_name);
        g_free(job->name);
        g_free(job->compression_name);
        g_free(job->format);
        g_free(job->upper_path);
        g_strfreev(job->base_paths);
        g_strfreev(job->base_digests);
        g_free(job->base_history);
        g_free(job->os);
        g_free(job->architecture);
        g_free(job->stop_signal);
        g_strfreev(job->exposed_ports);
        g_clear_pointer(&job->uid_map, g_array_unref);
        g_clear_pointer(&job->gid_map, g_array_unref);
        g_strfreev(job->env);
        g_strfreev(job->entrypoint);
        g_strfreev(job->cmd);
        g_strfreev(job->labels);
        g_strfreev(job->volumes);
        g_free(job->working_dir);
        g_free(job->user);
        g_free(job->from);
        g_clear_pointer(&job->layers, g_ptr_array_unref);
        g_free(job->config_json);
        g_free(job->config_digest);
        g_free(job->manifest_digest);
        g_free(job);
}

static int open_tree(const char *path, GError **error)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot open '%s': %s", path,
                            g_strerror(errno));
        return fd;
}

/* Writes the tree at @path as a layer blob. */
static KilnImageLayer *write_layer(KilnImageStore *store, const char *path, const KilnLayerWriteOptions *o,
                                   GCancellable *cancellable, GError **error)
{
        _cleanup_close_ int root = open_tree(path, error);
        _cleanup_close_ int out = -1;
        KilnLayerWriteResult res = {0};
        KilnImageLayer *l;
        g_autofree char *digest = NULL;

        if (root < 0 || (out = kiln_image_store_tmpfile(store, error)) < 0)
                return NULL;
        if (!kiln_layer_write(root, out, o, &res, cancellable, error))
                return NULL;
        digest = g_strconcat("sha256:", res.blob_digest, NULL);
        if (!kiln_image_store_link_blob(store, out, digest, error))
                return NULL;
        l = g_new0(KilnImageLayer, 1);
        l->digest = g_steal_pointer(&digest);
        l->diff_id = g_strconcat("sha256:", res.diff_id, NULL);
        l->size = res.blob_size;
        l->tar_size = res.tar_size;
        l->compression = o->compression;
        return l;
}

static void commit_thread(GTask *task, G_GNUC_UNUSED gpointer source, gpointer data,
                          GCancellable *cancellable)
{
        CommitJob *job = data;
        KilnImageStore *store = job->manager->images->store;
        g_autoptr(GPtrArray) layers = g_ptr_array_new_with_free_func(kiln_image_layer_free);
        g_autoptr(GPtrArray) diff_ids = g_ptr_array_new();
        g_autoptr(GPtrArray) history = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *manifest = NULL;
        GError *error = NULL;
        KilnImageLayer *l;
        /* Stored as tar: a commit costs one pass over the files and one hash; the compression the image
         * asks for is made when it is first pushed (image-store.c). */
        KilnLayerWriteOptions o = {.compression = KILN_COMPRESSION_NONE, .clamp_mtime = -1};

        for (guint i = 0; job->base_paths && job->base_paths[i]; i++) {
                /* Each base layer as stored (owners already the container's unless it is a shifted copy);
                 * written once per layer and compression, reused by every later commit on it. */
                l = kiln_image_store_lookup_base(store, job->base_digests[i], KILN_COMPRESSION_NONE);
                if (!l) {
                        if (job->base_shifted && job->uid_map) {
                                o.uid_map = (KilnIdMapping *)job->uid_map->data;
                                o.n_uid_map = job->uid_map->len;
                                o.gid_map = (KilnIdMapping *)job->gid_map->data;
                                o.n_gid_map = job->gid_map->len;
                        }
                        l = write_layer(store, job->base_paths[i], &o, cancellable, &error);
                        if (!l) {
                                g_prefix_error(&error, "Cannot write the base layer: ");
                                g_task_return_error(task, error);
                                return;
                        }
                        kiln_image_store_remember_base(store, job->base_digests[i], l);
                }
                g_ptr_array_add(layers, l);
                /* A base image brings its own history; a directory's layer gets one entry. */
                if (!job->base_history)
                        g_ptr_array_add(history, g_strdup_printf("kiln from %s", job->from));
        }
        o.uid_map = job->uid_map ? (KilnIdMapping *)job->uid_map->data : NULL;
        o.n_uid_map = job->uid_map ? job->uid_map->len : 0;
        o.gid_map = job->gid_map ? (KilnIdMapping *)job->gid_map->data : NULL;
        o.n_gid_map = job->gid_map ? job->gid_map->len : 0;
        o.clamp_mtime = job->has_timestamp ? (gint64)job->timestamp : -1;
        l = write_layer(store, job->upper_path, &o, cancellable, &error);
        if (!l) {
                g_prefix_error(&error, "Cannot write the builder's layer: ");
                g_task_return_error(task, error);
                return;
        }
        g_ptr_array_add(layers, l);
        g_ptr_array_add(history, g_strdup_printf(job->squash ? "kiln commit --squash %s" : "kiln commit %s",
                                                 job->builder_name));

        for (guint i = 0; i < layers->len; i++)
                g_ptr_array_add(diff_ids, ((KilnImageLayer *)layers->pdata[i])->diff_id);
        g_ptr_array_add(diff_ids, NULL);
        g_ptr_array_add(history, NULL);
        {
                KilnImageConfigInput in = {
                        .env = (const char *const *)job->env,
                        .entrypoint = (const char *const *)job->entrypoint,
                        .cmd = (const char *const *)job->cmd,
                        .working_dir = job->working_dir,
                        .user = job->user,
                        .labels = (const char *const *)job->labels,
                        .volumes = (const char *const *)job->volumes,
                        .stop_signal = job->stop_signal,
                        .exposed_ports = (const char *const *)job->exposed_ports,
                        .created = job->created,
                        .diff_ids = (const char *const *)diff_ids->pdata,
                        .base_history = job->base_history,
                        .history_created_by = (const char *const *)history->pdata,
                        .os = job->os,
                        .architecture = job->architecture,
                };
                job->config_json = kiln_image_config_json(&in);
        }
        /* kilnd keeps every image's config in memory and lists it whole: a builder's configuration (up to
         * MaxArrayLength x MaxStringLength a field) or a base image's history must not make it hold more
         * per image than ImageConfigBytes. The layers written are collected with the failed commit. */
        if (strlen(job->config_json) > job->config_bytes_max) {
                g_set_error(
                        &error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                        "The image config would be %zu bytes, past ImageConfigBytes (%" G_GUINT64_FORMAT
                        "): the builder's Env, Labels, Cmd, ... or the base image's history are too large",
                        strlen(job->config_json), job->config_bytes_max);
                goto fail;
        }
        if (!kiln_image_store_put_blob(store, job->config_json, strlen(job->config_json),
                                       &job->config_digest, &error))
                goto fail;
        manifest =
                kiln_image_manifest_json(job->format, job->config_digest, strlen(job->config_json), layers);
        job->manifest_size = strlen(manifest);
        if (!kiln_image_store_put_blob(store, manifest, job->manifest_size, &job->manifest_digest, &error))
                goto fail;
        job->layers = g_steal_pointer(&layers);
        g_task_return_boolean(task, TRUE);
        return;
fail:
        g_task_return_error(task, error);
}

static gboolean over_storage(KilnManager *m, uid_t uid, GError **error)
{
        guint64 limit = m->config->storage_bytes_per_user;
        guint64 used;

        if (uid == 0 || limit == G_MAXUINT64)
                return FALSE;
        used = kiln_manager_user_storage_bytes(m, uid);
        if (used <= limit)
                return FALSE;
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                    "User %u would keep %" G_GUINT64_FORMAT
                    " bytes of layers, images and caches, past StorageBytesPerUser "
                    "(%" G_GUINT64_FORMAT ")",
                    (unsigned)uid, used, limit);
        return TRUE;
}

static void commit_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CommitJob *job = data;
        KilnManager *m = job->manager;
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnImage) fresh = NULL;
        g_autofree char *id = NULL;
        KilnImage *image;
        guint64 size = 0;

        m->images->commits--;
        if (!g_task_propagate_boolean(G_TASK(result), &error))
                goto fail;
        id = kiln_image_id_for(job->caller_uid, job->config_digest);
        image = g_hash_table_lookup(m->images->by_id, id);
        if (!image) {
                if (job->caller_uid != 0 &&
                    count_owned(m->images, job->caller_uid) >= m->config->images_per_user) {
                        g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                    "User %u already has the limit of %u images (ImagesPerUser)",
                                    (unsigned)job->caller_uid, m->config->images_per_user);
                        goto fail;
                }
                fresh = g_new0(KilnImage, 1);
                fresh->id = g_steal_pointer(&id);
                fresh->names = g_new0(char *, 1);
                fresh->owner = job->caller_uid;
                fresh->created_usec = job->created * G_USEC_PER_SEC;
                fresh->format = g_strdup(job->format);
                fresh->compression = job->compression;
                fresh->manifest_digest = g_strdup(job->manifest_digest);
                fresh->config_digest = g_strdup(job->config_digest);
                fresh->layers = g_steal_pointer(&job->layers);
                fresh->config_json = g_steal_pointer(&job->config_json);
                for (guint i = 0; i < fresh->layers->len; i++)
                        size += ((KilnImageLayer *)fresh->layers->pdata[i])->size;
                fresh->size = size + job->manifest_size + strlen(fresh->config_json);
                if (job->name)
                        take_name(m, fresh, job->name);
                if (!kiln_image_store_save(m->images->store, fresh, &error)) {
                        error->domain = KILN_ERROR;
                        error->code = KILN_ERROR_CODE_FAILED;
                        goto fail;
                }
                image = g_steal_pointer(&fresh);
                add_image(m, image);
                if (over_storage(m, job->caller_uid, &error)) {
                        (void)kiln_image_store_remove(m->images->store, image->id, NULL);
                        g_hash_table_remove(m->images->by_id, image->id);
                        goto fail;
                }
                emit_image(m, image, IMAGE_ADDED);
        } else if (job->name && !has_name(image, job->name)) {
                /* The same builder committed again gives the same image: it gets the new name too, within
                 * the bound Tag keeps (else names would grow without one, commit after commit). */
                if (image->names && g_strv_length(image->names) >= m->config->max_array_length) {
                        g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                    "Invalid image_name: image %.12s already has %u names, the limit "
                                    "(MaxArrayLength)",
                                    image->id, m->config->max_array_length);
                        goto fail;
                }
                take_name(m, image, job->name);
                if (!kiln_image_store_save(m->images->store, image, &error)) {
                        error->domain = KILN_ERROR;
                        error->code = KILN_ERROR_CODE_FAILED;
                        goto fail;
                }
                emit_image(m, image, IMAGE_NAMES_CHANGED);
        }
        sd_bus_reply_method_return(job->message, "o", image->object_path);
        if (m->images->collect_pending)
                collect(m->images);
        commit_job_free(job);
        return;
fail:
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                reply_error(job->message, error);
        collect(m->images);
        commit_job_free(job);
}

/* What a builder made from an image keeps of it for a commit (objects/manager-dbus.c): its history, its
 * Volumes (the image's; the builder's own volumes are bind mounts of a run, not the image's), its
 * platform. */
static void read_base_image(CommitJob *job, const char *image_json)
{
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(GPtrArray) volumes = g_ptr_array_new();
        JsonObject *o;
        JsonNode *n;

        if (!image_json || !json_parser_load_from_data(p, image_json, -1, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
                return;
        o = json_node_get_object(json_parser_get_root(p));
        n = json_object_get_member(o, "history");
        if (n && JSON_NODE_HOLDS_ARRAY(n))
                job->base_history = json_to_string(n, FALSE);
        n = json_object_get_member(o, "Volumes");
        if (n && JSON_NODE_HOLDS_OBJECT(n)) {
                g_autoptr(GList) keys = json_object_get_members(json_node_get_object(n));
                for (GList *k = keys; k; k = k->next)
                        g_ptr_array_add(volumes, g_strdup(k->data));
                g_ptr_array_add(volumes, NULL);
                job->volumes = (char **)g_ptr_array_free(g_steal_pointer(&volumes), FALSE);
        }
        if ((n = json_object_get_member(o, "os")) && JSON_NODE_HOLDS_VALUE(n) &&
            json_node_get_value_type(n) == G_TYPE_STRING)
                job->os = g_strdup(json_node_get_string(n));
        if ((n = json_object_get_member(o, "architecture")) && JSON_NODE_HOLDS_VALUE(n) &&
            json_node_get_value_type(n) == G_TYPE_STRING)
                job->architecture = g_strdup(json_node_get_string(n));
}

static void commit_authorized(sd_bus_message *msg, const sd_bus_error *denied, gpointer data)
{
        CommitJob *req = data, *job;
        KilnManager *m = req->manager;
        g_autoptr(GError) error = NULL;
        g_autofree char *empty = kiln_layer_empty_digest();
        g_autofree char *builder_dir = NULL;
        g_auto(KilnIdMaps) maps = {0};
        gboolean mapped;
        KilnBuilder *b;
        GTask *task;

        if (denied) {
                sd_bus_reply_method_error(msg, denied);
                return;
        }
        b = g_hash_table_lookup(m->builders, req->builder_id);
        if (!b || b->pending_remove) {
                sd_bus_reply_method_errorf(msg, KILN_ERROR_NOT_FOUND, "Builder %s was removed",
                                           req->builder_id);
                return;
        }
        if (kiln_process_count_running(m, b->id, 0) > 0) {
                sd_bus_reply_method_errorf(
                        msg, KILN_ERROR_BUSY,
                        "Builder '%s' has running processes: commit it when they have ended", b->name);
                return;
        }
        job = g_new0(CommitJob, 1);
        *job = *req;
        memset(req, 0, sizeof(*req)); /* everything moved to the job */
        req->manager = m;
        job->message = sd_bus_message_ref(msg);

        /* The owners in the builder's upper dir are host ids: a user-namespace builder's go back through its
         * owner's maps (the ones its runs had). */
        mapped = g_strcmp0(b->config.userns, "auto") == 0;
        if (mapped) {
                if (!kiln_manager_id_maps(m, b->owner, &maps, &error))
                        goto fail;
                job->uid_map = g_array_ref(maps.uid_map);
                job->gid_map = g_array_ref(maps.gid_map);
        }
        builder_dir = kiln_storage_builder_dir(m->storage, b->id);
        if (job->squash) {
                /* The merged tree, as a run sees it: mounted with the owner's maps when mapped, so that
                 * every owner is a host id that the same maps take back. */
                char *root = kiln_manager_acquire_rootfs(m, b, mapped ? &maps : NULL, &error);
                if (!root)
                        goto fail;
                job->rootfs_held = TRUE;
                job->upper_path = root;
        } else {
                job->upper_path = g_build_filename(builder_dir, "upper", NULL);
                g_autoptr(GPtrArray) paths = g_ptr_array_new();
                g_autoptr(GPtrArray) digests = g_ptr_array_new();
                const char *single[] = {b->layer, NULL};
                for (char *const *l = b->layers ? b->layers : (char **)single; *l; l++) {
                        if (g_str_equal(*l, empty))
                                continue; /* scratch: an image of no layer */
                        g_ptr_array_add(paths, g_build_filename(m->config->state_dir, "layers", *l, NULL));
                        g_ptr_array_add(digests, g_strdup(*l));
                }
                g_ptr_array_add(paths, NULL);
                g_ptr_array_add(digests, NULL);
                job->base_paths = (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
                job->base_digests = (char **)g_ptr_array_free(g_steal_pointer(&digests), FALSE);
                job->base_shifted = b->layer_shifted;
        }
        read_base_image(job, b->image);
        job->builder_name = g_strdup(b->name);
        job->from = g_strdup(b->from);
        job->env = g_strdupv(b->config.env);
        job->entrypoint = g_strdupv(b->config.entrypoint);
        job->cmd = g_strdupv(b->config.cmd);
        job->labels = g_strdupv(b->config.labels);
        job->stop_signal = g_strdup(b->config.stop_signal);
        job->exposed_ports = g_strdupv(b->config.exposed_ports);
        job->working_dir = g_strdup(b->config.working_dir);
        job->user = g_strdup(b->config.user);
        job->created = job->has_timestamp ? (gint64)job->timestamp : g_get_real_time() / G_USEC_PER_SEC;

        m->images->commits++;
        task = g_task_new(NULL, NULL, commit_done, job);
        g_task_set_task_data(task, job, NULL);
        g_task_run_in_thread(task, commit_thread);
        g_object_unref(task);
        return;
fail:
        reply_error(msg, error);
        commit_job_free(job);
}

static void commit_request_free(gpointer data)
{
        commit_job_free(data);
}

static int method_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        KilnManager *m = b->manager;
        g_autoptr(GError) local = NULL;
        const KilnCreds *creds;
        const char *name;
        const char *details[] = {"builder", b->name, "image", NULL, NULL};
        CommitJob *req;
        int r;

        r = kiln_auth_get_caller(m->auth, msg, &creds, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        req = g_new0(CommitJob, 1);
        req->manager = m;
        req->caller_uid = creds->uid;
        req->builder_id = g_strdup(b->id);
        req->config_bytes_max = m->config->image_config_bytes;
        {
                OptionSlot slots[] = {
                        {"timestamp", 't', &req->timestamp, &req->has_timestamp},
                        {"squash", 'b', &req->squash},
                        {"compression", 's', &req->compression_name},
                        {"format", 's', &req->format},
                };
                if (!read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
                        goto fail;
        }
        if (!kiln_check_string_limit("image_name", name, m->config, &local))
                goto fail;
        if (*name && !(req->name = kiln_image_normalize_name("image_name", name, &local)))
                goto fail;
        if (!req->compression_name)
                req->compression_name = g_strdup("gzip");
        if (!kiln_compression_from_string(req->compression_name, &req->compression)) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid compression: '%.64s' is not 'gzip', 'zstd' or 'none'",
                          req->compression_name);
                goto fail;
        }
        if (!req->format)
                req->format = g_strdup("oci");
        if (!g_str_equal(req->format, "oci") && !g_str_equal(req->format, "docker")) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid format: '%.64s' is not 'oci' or 'docker'", req->format);
                goto fail;
        }
        if (g_str_equal(req->format, "docker") && req->compression == KILN_COMPRESSION_ZSTD) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid compression: 'zstd' layers have no docker media type (use format 'oci')");
                goto fail;
        }
        if (req->timestamp > (guint64)G_MAXINT64 / G_USEC_PER_SEC) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid timestamp: too far in the future");
                goto fail;
        }
        if (b->pending_remove) {
                kiln_fail(&local, KILN_ERROR_CODE_BUSY, "Builder '%s' is being removed", b->name);
                goto fail;
        }
        if (kiln_process_count_running(m, b->id, 0) > 0) {
                kiln_fail(&local, KILN_ERROR_CODE_BUSY,
                          "Builder '%s' has running processes: commit it when they have ended", b->name);
                goto fail;
        }
        if (creds->uid != 0 && count_owned(m->images, creds->uid) >= m->config->images_per_user) {
                kiln_fail(&local, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                          "User %u already has the limit of %u images (ImagesPerUser)", (unsigned)creds->uid,
                          m->config->images_per_user);
                goto fail;
        }
        if (over_storage(m, creds->uid, &local))
                goto fail;
        details[3] = req->name ? req->name : "(no name)";
        return kiln_auth_check(m->auth, msg, KILN_ACTION_CREATE, details, commit_authorized, req,
                               commit_request_free);
fail:
        commit_job_free(req);
        return kiln_error_to_bus(local, error);
}

static const sd_bus_vtable builder_commit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Commit", SD_BUS_ARGS("s", image_name, "a{sv}", options),
                                SD_BUS_RESULT("o", image), method_commit, SD_BUS_VTABLE_UNPRIVILEGED),
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
                add_image(m, g_steal_pointer(&loaded->pdata[i]));
        collect(images);

        r = sd_bus_add_object_vtable(m->bus, &images->slots[0], KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE,
                                     manager_images_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &images->slots[1], KILN_BUILDER_PATH_PREFIX,
                                               KILN_BUILDER_INTERFACE, builder_commit_vtable,
                                               kiln_builder_object_find, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &images->slots[2], KILN_IMAGE_PATH_PREFIX,
                                               KILN_IMAGE_INTERFACE, image_vtable, image_object_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, &images->slots[3], KILN_IMAGE_PATH_PREFIX,
                                               image_node_enumerator, m);
        return r;
}
