/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>

#include <json-glib/json-glib.h>

#include "base/archive-load.h"
#include "base/errors.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "image/image-store.h"
#include "import/layer-digest.h"

#define IMAGE_FILE "image.json"
#define IMAGE_JSON_MAX (1024 * 1024)
#define COPY_CHUNK (128 * 1024)

struct KilnImageStore {
        char *dir; /* STATE/images */
        int dir_fd;
        int blobs_fd; /* STATE/images/blobs/sha256 */
        int bases_fd; /* STATE/images/bases */
        GMutex lock;  /* the bases records, written from commit threads */
};

void kiln_image_layer_free(gpointer data)
{
        KilnImageLayer *l = data;

        if (!l)
                return;
        g_free(l->digest);
        g_free(l->diff_id);
        g_free(l);
}

void kiln_image_free(KilnImage *image)
{
        if (!image)
                return;
        g_free(image->id);
        g_strfreev(image->names);
        g_free(image->format);
        g_free(image->manifest_digest);
        g_free(image->config_digest);
        g_clear_pointer(&image->layers, g_ptr_array_unref);
        g_free(image->object_path);
        g_free(image->config_json);
        g_free(image);
}

static KilnImageLayer *layer_copy(const KilnImageLayer *l)
{
        KilnImageLayer *c = g_new0(KilnImageLayer, 1);

        *c = *l;
        c->digest = g_strdup(l->digest);
        c->diff_id = g_strdup(l->diff_id);
        return c;
}

KilnImage *kiln_image_copy(const KilnImage *image)
{
        KilnImage *c = g_new0(KilnImage, 1);

        c->id = g_strdup(image->id);
        c->names = g_strdupv(image->names);
        c->owner = image->owner;
        c->created_usec = image->created_usec;
        c->format = g_strdup(image->format);
        c->compression = image->compression;
        c->manifest_digest = g_strdup(image->manifest_digest);
        c->config_digest = g_strdup(image->config_digest);
        c->layers = g_ptr_array_new_with_free_func(kiln_image_layer_free);
        for (guint i = 0; i < image->layers->len; i++)
                g_ptr_array_add(c->layers, layer_copy(image->layers->pdata[i]));
        c->config_json = g_strdup(image->config_json);
        c->size = image->size;
        return c;
}

/* "sha256:" and 64 lowercase hex characters. */
static gboolean digest_is_valid(const char *d)
{
        if (!d || !g_str_has_prefix(d, "sha256:") || strlen(d) != 7 + 64)
                return FALSE;
        for (const char *p = d + 7; *p; p++)
                if (!g_ascii_isdigit(*p) && !(*p >= 'a' && *p <= 'f'))
                        return FALSE;
        return TRUE;
}

char *kiln_image_id_for(uid_t owner, const char *config_digest)
{
        g_autofree char *s = g_strdup_printf("kiln-image-v1\n%u\n%s", (unsigned)owner, config_digest);

        return g_compute_checksum_for_string(G_CHECKSUM_SHA256, s, -1);
}

char *kiln_image_normalize_name(const char *arg, const char *name, GError **error)
{
        const char *colon = strrchr(name, ':');
        const char *slash = strrchr(name, '/');
        const char *tag = colon && (!slash || colon > slash) ? colon + 1 : NULL;
        gsize repo_len = tag ? (gsize)(colon - name) : strlen(name);

        if (strlen(name) > 255 || repo_len == 0 || !g_ascii_isalnum(name[0])) {
                kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid %s: '%.64s' is not NAME[:TAG] (a letter or digit first, at most 255 "
                          "characters)",
                          arg, name);
                return NULL;
        }
        for (gsize i = 0; i < repo_len; i++)
                if (!g_ascii_islower(name[i]) && !g_ascii_isdigit(name[i]) && !strchr("._/-", name[i])) {
                        kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                  "Invalid %s: '%.64s': a name has lowercase letters, digits, '.', '_', '/' "
                                  "and '-' only",
                                  arg, name);
                        return NULL;
                }
        if (tag) {
                gsize n = strlen(tag);
                gboolean ok = n > 0 && n <= 128 && (g_ascii_isalnum(tag[0]) || tag[0] == '_');
                for (gsize i = 0; ok && i < n; i++)
                        ok = g_ascii_isalnum(tag[i]) || strchr("._-", tag[i]);
                if (!ok) {
                        kiln_fail(
                                error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                "Invalid %s: '%.64s': a tag has letters, digits, '.', '_' and '-' only, at "
                                "most 128",
                                arg, name);
                        return NULL;
                }
                return g_strdup(name);
        }
        return g_strconcat(name, ":latest", NULL);
}

/* JSON helpers: every document is built member by member in a fixed order, so the same input gives the
 * same bytes (the digests depend on it). */

static char *generate(JsonBuilder *jb)
{
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(jb);

        json_generator_set_root(gen, root);
        return json_generator_to_data(gen, NULL);
}

static void add_string(JsonBuilder *jb, const char *name, const char *value)
{
        json_builder_set_member_name(jb, name);
        json_builder_add_string_value(jb, value);
}

static void add_int(JsonBuilder *jb, const char *name, gint64 value)
{
        json_builder_set_member_name(jb, name);
        json_builder_add_int_value(jb, value);
}

static void add_strv(JsonBuilder *jb, const char *name, const char *const *v)
{
        json_builder_set_member_name(jb, name);
        json_builder_begin_array(jb);
        for (; v && *v; v++)
                json_builder_add_string_value(jb, *v);
        json_builder_end_array(jb);
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* {"a": {}, "b": {}}: how the image config writes sets (Volumes, ExposedPorts). */
static void add_set(JsonBuilder *jb, const char *name, const char *const *v)
{
        g_autoptr(GPtrArray) sorted = g_ptr_array_new();

        for (; v && *v; v++)
                g_ptr_array_add(sorted, (gpointer)*v);
        g_ptr_array_sort(sorted, compare_strings);
        json_builder_set_member_name(jb, name);
        json_builder_begin_object(jb);
        for (guint i = 0; i < sorted->len; i++) {
                json_builder_set_member_name(jb, sorted->pdata[i]);
                json_builder_begin_object(jb);
                json_builder_end_object(jb);
        }
        json_builder_end_object(jb);
}

static char *rfc3339(gint64 seconds)
{
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(seconds);

        return t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("1970-01-01T00:00:00Z");
}

static const char *go_arch(void)
{
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__i386__)
        return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return "ppc64le";
#elif defined(__s390x__)
        return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
        return "riscv64";
#elif defined(__arm__)
        return "arm";
#else
        return "unknown";
#endif
}

char *kiln_image_config_json(const KilnImageConfigInput *in)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autofree char *created = rfc3339(in->created);
        g_autoptr(JsonParser) base = json_parser_new();
        JsonArray *base_history = NULL;

        json_builder_begin_object(jb);
        add_string(jb, "created", created);
        add_string(jb, "architecture", in->architecture ? in->architecture : go_arch());
        add_string(jb, "os", in->os ? in->os : "linux");
        json_builder_set_member_name(jb, "config");
        json_builder_begin_object(jb);
        if (in->user && *in->user)
                add_string(jb, "User", in->user);
        if (in->exposed_ports && *in->exposed_ports)
                add_set(jb, "ExposedPorts", in->exposed_ports);
        if (in->env && *in->env)
                add_strv(jb, "Env", in->env);
        if (in->entrypoint && *in->entrypoint)
                add_strv(jb, "Entrypoint", in->entrypoint);
        if (in->cmd && *in->cmd)
                add_strv(jb, "Cmd", in->cmd);
        if (in->volumes && *in->volumes)
                add_set(jb, "Volumes", in->volumes);
        if (in->working_dir && *in->working_dir)
                add_string(jb, "WorkingDir", in->working_dir);
        if (in->labels && *in->labels) {
                json_builder_set_member_name(jb, "Labels");
                json_builder_begin_object(jb);
                for (const char *const *l = in->labels; *l; l++) {
                        const char *eq = strchr(*l, '=');
                        g_autofree char *key = eq ? g_strndup(*l, eq - *l) : g_strdup(*l);
                        json_builder_set_member_name(jb, key);
                        json_builder_add_string_value(jb, eq ? eq + 1 : "");
                }
                json_builder_end_object(jb);
        }
        if (in->stop_signal && *in->stop_signal)
                add_string(jb, "StopSignal", in->stop_signal);
        json_builder_end_object(jb);
        json_builder_set_member_name(jb, "rootfs");
        json_builder_begin_object(jb);
        add_string(jb, "type", "layers");
        add_strv(jb, "diff_ids", in->diff_ids);
        json_builder_end_object(jb);
        json_builder_set_member_name(jb, "history");
        json_builder_begin_array(jb);
        if (in->base_history && json_parser_load_from_data(base, in->base_history, -1, NULL) &&
            JSON_NODE_HOLDS_ARRAY(json_parser_get_root(base)))
                base_history = json_node_get_array(json_parser_get_root(base));
        for (guint i = 0; base_history && i < json_array_get_length(base_history); i++)
                json_builder_add_value(jb, json_node_copy(json_array_get_element(base_history, i)));
        for (guint i = 0; in->history_created_by && in->history_created_by[i]; i++) {
                json_builder_begin_object(jb);
                add_string(jb, "created", created);
                add_string(jb, "created_by", in->history_created_by[i]);
                json_builder_end_object(jb);
        }
        json_builder_end_array(jb);
        json_builder_end_object(jb);
        return generate(jb);
}

static const char *layer_media_type(const char *format, KilnCompression c)
{
        gboolean docker = g_str_equal(format, "docker");

        switch (c) {
        case KILN_COMPRESSION_GZIP:
                return docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                              : "application/vnd.oci.image.layer.v1.tar+gzip";
        case KILN_COMPRESSION_ZSTD:
                return "application/vnd.oci.image.layer.v1.tar+zstd";
        case KILN_COMPRESSION_NONE:
                break;
        }
        return docker ? "application/vnd.docker.image.rootfs.diff.tar"
                      : "application/vnd.oci.image.layer.v1.tar";
}

char *kiln_image_manifest_json(const char *format, const char *config_digest, guint64 config_size,
                               const GPtrArray *layers)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();
        gboolean docker = g_str_equal(format, "docker");

        json_builder_begin_object(jb);
        add_int(jb, "schemaVersion", 2);
        add_string(jb, "mediaType", docker ? KILN_MEDIA_DOCKER_MANIFEST : KILN_MEDIA_OCI_MANIFEST);
        json_builder_set_member_name(jb, "config");
        json_builder_begin_object(jb);
        add_string(jb, "mediaType", docker ? KILN_MEDIA_DOCKER_CONFIG : KILN_MEDIA_OCI_CONFIG);
        add_string(jb, "digest", config_digest);
        add_int(jb, "size", config_size);
        json_builder_end_object(jb);
        json_builder_set_member_name(jb, "layers");
        json_builder_begin_array(jb);
        for (guint i = 0; i < layers->len; i++) {
                const KilnImageLayer *l = layers->pdata[i];
                json_builder_begin_object(jb);
                add_string(jb, "mediaType", layer_media_type(format, l->compression));
                add_string(jb, "digest", l->digest);
                add_int(jb, "size", l->size);
                json_builder_end_object(jb);
        }
        json_builder_end_array(jb);
        json_builder_end_object(jb);
        return generate(jb);
}

char *kiln_image_to_json(const KilnImage *image)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();

        json_builder_begin_object(jb);
        add_int(jb, "version", 1);
        add_string(jb, "id", image->id);
        add_int(jb, "owner", image->owner);
        add_strv(jb, "names", (const char *const *)image->names);
        add_int(jb, "created", (gint64)image->created_usec);
        add_string(jb, "format", image->format);
        add_string(jb, "compression", kiln_compression_to_string(image->compression));
        add_string(jb, "manifest", image->manifest_digest);
        add_string(jb, "config", image->config_digest);
        json_builder_set_member_name(jb, "layers");
        json_builder_begin_array(jb);
        for (guint i = 0; i < image->layers->len; i++) {
                const KilnImageLayer *l = image->layers->pdata[i];
                json_builder_begin_object(jb);
                add_string(jb, "digest", l->digest);
                add_string(jb, "diff_id", l->diff_id);
                add_int(jb, "size", (gint64)l->size);
                add_int(jb, "tar_size", (gint64)l->tar_size);
                add_string(jb, "compression", kiln_compression_to_string(l->compression));
                json_builder_end_object(jb);
        }
        json_builder_end_array(jb);
        json_builder_end_object(jb);
        return generate(jb);
}

static gboolean invalid_json(GError **error, const char *why)
{
        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Invalid image metadata: %s", why);
}

KilnImage *kiln_image_from_json(const char *json, gsize length, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(KilnImage) image = g_new0(KilnImage, 1);
        JsonObject *o, *lo;
        JsonArray *names, *layers;
        gint64 owner;

        if (!json_parser_load_from_data(parser, json, length, error))
                return NULL;
        if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
                return invalid_json(error, "not an object"), NULL;
        o = json_node_get_object(json_parser_get_root(parser));
        if (json_object_get_int_member_with_default(o, "version", 0) != 1)
                return invalid_json(error, "unknown version"), NULL;
        image->id = g_strdup(json_object_get_string_member_with_default(o, "id", ""));
        owner = json_object_get_int_member_with_default(o, "owner", -1);
        image->created_usec = json_object_get_int_member_with_default(o, "created", 0);
        image->format = g_strdup(json_object_get_string_member_with_default(o, "format", "oci"));
        if (!kiln_compression_from_string(
                    json_object_get_string_member_with_default(o, "compression", "gzip"),
                    &image->compression))
                return invalid_json(error, "compression"), NULL;
        image->manifest_digest = g_strdup(json_object_get_string_member_with_default(o, "manifest", ""));
        image->config_digest = g_strdup(json_object_get_string_member_with_default(o, "config", ""));
        if (!kiln_hex64_is_valid(image->id) || owner < 0 || owner > G_MAXUINT32 ||
            !digest_is_valid(image->manifest_digest) || !digest_is_valid(image->config_digest) ||
            (!g_str_equal(image->format, "oci") && !g_str_equal(image->format, "docker")))
                return invalid_json(error, "id, owner, format or digests"), NULL;
        image->owner = owner;
        names = json_object_has_member(o, "names") ? json_object_get_array_member(o, "names") : NULL;
        image->names = g_new0(char *, (names ? json_array_get_length(names) : 0) + 1);
        for (guint i = 0; names && i < json_array_get_length(names); i++) {
                const char *n = json_array_get_string_element(names, i);
                if (!n)
                        return invalid_json(error, "names"), NULL;
                image->names[i] = g_strdup(n);
        }
        layers = json_object_has_member(o, "layers") ? json_object_get_array_member(o, "layers") : NULL;
        if (!layers)
                return invalid_json(error, "layers"), NULL;
        image->layers = g_ptr_array_new_with_free_func(kiln_image_layer_free);
        for (guint i = 0; i < json_array_get_length(layers); i++) {
                KilnImageLayer *l = g_new0(KilnImageLayer, 1);
                g_ptr_array_add(image->layers, l);
                lo = json_array_get_object_element(layers, i);
                if (!lo)
                        return invalid_json(error, "layers"), NULL;
                l->digest = g_strdup(json_object_get_string_member_with_default(lo, "digest", ""));
                l->diff_id = g_strdup(json_object_get_string_member_with_default(lo, "diff_id", ""));
                l->size = json_object_get_int_member_with_default(lo, "size", 0);
                l->tar_size = json_object_get_int_member_with_default(lo, "tar_size", 0);
                if (!digest_is_valid(l->digest) || !digest_is_valid(l->diff_id) ||
                    !kiln_compression_from_string(
                            json_object_get_string_member_with_default(lo, "compression", ""),
                            &l->compression))
                        return invalid_json(error, "a layer"), NULL;
        }
        return g_steal_pointer(&image);
}

static int ensure_dir_at(int dir_fd, const char *name, GError **error)
{
        int fd;

        if (mkdirat(dir_fd, name, 0700) < 0 && errno != EEXIST) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot create '%s': %s", name,
                            g_strerror(errno));
                return -1;
        }
        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot open '%s': %s", name,
                            g_strerror(errno));
        return fd;
}

KilnImageStore *kiln_image_store_new(const char *state_dir, GError **error)
{
        g_autoptr(KilnImageStore) s = g_new0(KilnImageStore, 1);
        _cleanup_close_ int blobs = -1;

        g_mutex_init(&s->lock);
        s->dir_fd = s->blobs_fd = s->bases_fd = -1;
        s->dir = g_build_filename(state_dir, "images", NULL);
        if (g_mkdir_with_parents(s->dir, 0700) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot create '%s': %s",
                            s->dir, g_strerror(errno));
                return NULL;
        }
        s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s->dir_fd < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot open '%s': %s", s->dir,
                            g_strerror(errno));
                return NULL;
        }
        blobs = ensure_dir_at(s->dir_fd, "blobs", error);
        if (blobs < 0 || (s->blobs_fd = ensure_dir_at(blobs, "sha256", error)) < 0 ||
            (s->bases_fd = ensure_dir_at(s->dir_fd, "bases", error)) < 0)
                return NULL;
        return g_steal_pointer(&s);
}

void kiln_image_store_free(KilnImageStore *s)
{
        if (!s)
                return;
        kiln_close_fdp(&s->dir_fd);
        kiln_close_fdp(&s->blobs_fd);
        kiln_close_fdp(&s->bases_fd);
        g_mutex_clear(&s->lock);
        g_free(s->dir);
        g_free(s);
}

char *kiln_image_store_blob_path(KilnImageStore *s, const char *digest)
{
        return g_build_filename(s->dir, "blobs", "sha256", digest + strlen("sha256:"), NULL);
}

static gboolean blob_exists(KilnImageStore *s, const char *digest, guint64 *size)
{
        struct stat st;

        if (!digest_is_valid(digest) || fstatat(s->blobs_fd, digest + 7, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
                return FALSE;
        if (size)
                *size = st.st_size;
        return TRUE;
}

static char *read_small_file_at(int dir_fd, const char *name, gsize max, gsize *len)
{
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        char *buf;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (gsize)st.st_size > max)
                return NULL;
        buf = g_malloc(st.st_size + 1);
        n = read(fd, buf, st.st_size);
        if (n != st.st_size) {
                g_free(buf);
                return NULL;
        }
        buf[n] = '\0';
        *len = n;
        return buf;
}

GPtrArray *kiln_image_store_load(KilnImageStore *s)
{
        GPtrArray *images = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_image_free);
        int copy = fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
        DIR *d = copy >= 0 ? fdopendir(copy) : NULL;
        if (d) /* the copy shares the offset of the last listing */
                rewinddir(d);
        struct dirent *de;

        if (!d) {
                kiln_close_fdp(&copy);
                g_warning("Cannot list '%s': %s", s->dir, g_strerror(errno));
                return images;
        }
        while ((de = readdir(d))) {
                g_autoptr(GError) error = NULL;
                g_autofree char *json = NULL;
                _cleanup_close_ int dfd = -1;
                KilnImage *image;
                gsize len = 0;
                guint64 size;

                if (g_str_has_prefix(de->d_name, ".tmp-")) {
                        (void)unlinkat(s->dir_fd, de->d_name, 0);
                        continue;
                }
                if (!kiln_hex64_is_valid(de->d_name))
                        continue;
                dfd = openat(s->dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                json = dfd >= 0 ? read_small_file_at(dfd, IMAGE_FILE, IMAGE_JSON_MAX, &len) : NULL;
                image = json ? kiln_image_from_json(json, len, &error) : NULL;
                if (image && !g_str_equal(image->id, de->d_name)) {
                        g_clear_pointer(&image, kiln_image_free);
                        g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_FAILED,
                                    "the id is not the directory's");
                }
                if (image) {
                        gsize clen = 0;
                        g_autofree char *cname = g_strdup(image->config_digest + 7);
                        image->config_json = read_small_file_at(s->blobs_fd, cname, IMAGE_JSON_MAX, &clen);
                        image->size = 0;
                        if (!image->config_json || !blob_exists(s, image->manifest_digest, &size)) {
                                g_clear_pointer(&image, kiln_image_free);
                                g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_FAILED, "a blob is missing");
                        } else {
                                image->size = size + clen;
                                for (guint i = 0; i < image->layers->len; i++)
                                        image->size += ((KilnImageLayer *)image->layers->pdata[i])->size;
                        }
                }
                if (!image) {
                        g_warning("Cannot load image %s: %s", de->d_name,
                                  error ? error->message : "image.json cannot be read");
                        continue;
                }
                g_ptr_array_add(images, image);
        }
        closedir(d);
        return images;
}

gboolean kiln_image_store_save(KilnImageStore *s, const KilnImage *image, GError **error)
{
        g_autofree char *json = kiln_image_to_json(image);
        g_autofree char *path = g_build_filename(s->dir, image->id, IMAGE_FILE, NULL);

        if (mkdirat(s->dir_fd, image->id, 0700) < 0 && errno != EEXIST) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot create '%s/%s': %s",
                            s->dir, image->id, g_strerror(errno));
                return FALSE;
        }
        /* Atomically, as builder.json: a crash leaves the old or the new record. */
        return g_file_set_contents_full(
                path, json, -1, G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600, error);
}

gboolean kiln_image_store_remove(KilnImageStore *s, const char *id, GError **error)
{
        g_autofree char *failed = NULL;

        if (!kiln_hex64_is_valid(id))
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid image id");
        if (kiln_rm_rf_at(s->dir_fd, id, &failed) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot remove '%s/%s': %s",
                            s->dir, failed ? failed : id, g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

static void keep_digest(GHashTable *keep, const char *digest)
{
        if (digest && strlen(digest) > 7)
                g_hash_table_add(keep, g_strdup(digest + 7));
}

void kiln_image_store_collect(KilnImageStore *s, GPtrArray *images)
{
        g_autoptr(GHashTable) keep = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        int copy;
        DIR *d;
        struct dirent *de;

        for (guint i = 0; i < images->len; i++) {
                const KilnImage *image = images->pdata[i];
                keep_digest(keep, image->manifest_digest);
                keep_digest(keep, image->config_digest);
                for (guint j = 0; j < image->layers->len; j++)
                        keep_digest(keep, ((KilnImageLayer *)image->layers->pdata[j])->digest);
        }
        g_mutex_lock(&s->lock);
        /* A compressed blob made for a push is kept while the tar it was made from is. */
        copy = fcntl(s->bases_fd, F_DUPFD_CLOEXEC, 3);
        d = copy >= 0 ? fdopendir(copy) : NULL;
        if (d)
                rewinddir(d);
        while (d && (de = readdir(d))) {
                g_autofree char *key = g_strndup(de->d_name, 64);
                g_autofree char *json = NULL;
                g_autoptr(JsonParser) p = json_parser_new();
                const char *digest;
                gsize len = 0;

                if (!g_hash_table_contains(keep, key))
                        continue;
                json = read_small_file_at(s->bases_fd, de->d_name, 4096, &len);
                if (json && json_parser_load_from_data(p, json, len, NULL) &&
                    JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)) &&
                    (digest = json_object_get_string_member_with_default(
                             json_node_get_object(json_parser_get_root(p)), "digest", NULL)))
                        keep_digest(keep, digest);
        }
        if (d)
                closedir(d);
        else
                kiln_close_fdp(&copy);
        copy = fcntl(s->blobs_fd, F_DUPFD_CLOEXEC, 3);
        d = copy >= 0 ? fdopendir(copy) : NULL;
        if (d) /* the copy shares the offset of the last listing */
                rewinddir(d);
        while (d && (de = readdir(d)))
                if (kiln_hex64_is_valid(de->d_name) && !g_hash_table_contains(keep, de->d_name))
                        (void)unlinkat(s->blobs_fd, de->d_name, 0);
        if (d)
                closedir(d);
        else
                kiln_close_fdp(&copy);
        /* A base record whose blob went is stale: the next commit writes the base again. */
        copy = fcntl(s->bases_fd, F_DUPFD_CLOEXEC, 3);
        d = copy >= 0 ? fdopendir(copy) : NULL;
        if (d) /* the copy shares the offset of the last listing */
                rewinddir(d);
        while (d && (de = readdir(d))) {
                gsize len = 0;
                g_autofree char *json = NULL;
                g_autoptr(JsonParser) p = NULL;
                const char *digest = NULL;

                if (de->d_name[0] == '.')
                        continue;
                json = read_small_file_at(s->bases_fd, de->d_name, 4096, &len);
                p = json_parser_new();
                if (json && json_parser_load_from_data(p, json, len, NULL) &&
                    JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
                        digest = json_object_get_string_member_with_default(
                                json_node_get_object(json_parser_get_root(p)), "digest", NULL);
                if (!digest || strlen(digest) < 8 || !g_hash_table_contains(keep, digest + 7))
                        (void)unlinkat(s->bases_fd, de->d_name, 0);
        }
        if (d)
                closedir(d);
        else
                kiln_close_fdp(&copy);
        g_mutex_unlock(&s->lock);
}

int kiln_image_store_tmpfile(KilnImageStore *s, GError **error)
{
        int fd = openat(s->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "Cannot create a temporary file in '%s': %s", s->dir, g_strerror(errno));
        return fd;
}

gboolean kiln_image_store_link_blob(KilnImageStore *s, int fd, const char *digest, GError **error)
{
        g_autofree char *proc = g_strdup_printf("/proc/self/fd/%d", fd);

        struct stat st;

        if (!digest_is_valid(digest))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Invalid blob digest");
        /* Blobs are content-addressed and made durable before they are linked: one already there has these
         * very bytes on disk, so this copy is dropped unsynced (the same builder committed again made
         * every byte anew). No blob is collected while a commit writes (image-dbus.c). */
        if (fstatat(s->blobs_fd, digest + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                return TRUE;
        if (fsync(fd) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot write blob %s: %s",
                            digest, g_strerror(errno));
                return FALSE;
        }
        /* Blobs are content-addressed: one already there has these very bytes. */
        if (linkat(AT_FDCWD, proc, s->blobs_fd, digest + 7, AT_SYMLINK_FOLLOW) < 0 && errno != EEXIST) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot store blob %s: %s",
                            digest, g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

gboolean kiln_image_store_put_blob(KilnImageStore *s, const char *bytes, gsize len, char **ret_digest,
                                   GError **error)
{
        g_autofree char *hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)bytes, len);
        g_autofree char *digest = g_strconcat("sha256:", hex, NULL);
        _cleanup_close_ int fd = kiln_image_store_tmpfile(s, error);
        gsize done = 0;

        if (fd < 0)
                return FALSE;
        while (done < len) {
                ssize_t n = write(fd, bytes + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot write blob: %s",
                                    g_strerror(errno));
                        return FALSE;
                }
                done += n;
        }
        if (!kiln_image_store_link_blob(s, fd, digest, error))
                return FALSE;
        *ret_digest = g_steal_pointer(&digest);
        return TRUE;
}

static char *base_record_name(const char *layer_digest, KilnCompression c)
{
        return g_strdup_printf("%s-%s", layer_digest, kiln_compression_to_string(c));
}

KilnImageLayer *kiln_image_store_lookup_base(KilnImageStore *s, const char *layer_digest, KilnCompression c)
{
        g_autofree char *name = base_record_name(layer_digest, c);
        g_autofree char *json = NULL;
        g_autoptr(JsonParser) p = json_parser_new();
        KilnImageLayer *l = NULL;
        JsonObject *o;
        gsize len = 0;
        guint64 size;

        g_mutex_lock(&s->lock);
        json = read_small_file_at(s->bases_fd, name, 4096, &len);
        if (json && json_parser_load_from_data(p, json, len, NULL) &&
            JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
                o = json_node_get_object(json_parser_get_root(p));
                l = g_new0(KilnImageLayer, 1);
                l->digest = g_strdup(json_object_get_string_member_with_default(o, "digest", ""));
                l->diff_id = g_strdup(json_object_get_string_member_with_default(o, "diff_id", ""));
                l->tar_size = json_object_get_int_member_with_default(o, "tar_size", 0);
                l->compression = c;
                if (!digest_is_valid(l->diff_id) || !blob_exists(s, l->digest, &size))
                        g_clear_pointer(&l, kiln_image_layer_free);
                else
                        l->size = size;
        }
        g_mutex_unlock(&s->lock);
        return l;
}

void kiln_image_store_remember_base(KilnImageStore *s, const char *layer_digest, const KilnImageLayer *l)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autofree char *name = base_record_name(layer_digest, l->compression);
        g_autofree char *path = g_build_filename(s->dir, "bases", name, NULL);
        g_autofree char *json = NULL;

        json_builder_begin_object(jb);
        add_string(jb, "digest", l->digest);
        add_string(jb, "diff_id", l->diff_id);
        add_int(jb, "tar_size", (gint64)l->tar_size);
        json_builder_end_object(jb);
        json = generate(jb);
        g_mutex_lock(&s->lock);
        (void)g_file_set_contents_full(path, json, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, NULL);
        g_mutex_unlock(&s->lock);
}

guint64 kiln_images_bytes(G_GNUC_UNUSED KilnImageStore *s, GPtrArray *images, uid_t owner)
{
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        guint64 n = 0;

        for (guint i = 0; i < images->len; i++) {
                const KilnImage *image = images->pdata[i];
                if (image->owner != owner)
                        continue;
                for (guint j = 0; j < image->layers->len; j++) {
                        const KilnImageLayer *l = image->layers->pdata[j];
                        if (g_hash_table_add(seen, l->digest))
                                n += l->size;
                }
                n += strlen(image->config_json ? image->config_json : "") + 1024;
        }
        return n;
}

/* Push: the archive writers. */

typedef struct {
        int fd;
        guint timeout_sec;
        guint timeout_init;
        GCancellable *cancellable;
        GError *error;
        gboolean failed; /* once a write failed, none is tried again (not even the archive's end) */
} PushOut;

/* The caller's descriptor may be a pipe whose reader never reads: each write waits for it at most
 * timeout_sec, so a push cannot hold its thread for ever. */
static la_ssize_t on_push_bytes(struct archive *a, void *data, const void *buf, size_t len)
{
        PushOut *o = data;
        const char *p = buf;
        size_t left = len;

        if (o->failed)
                return -1;
        while (left > 0) {
                struct pollfd pfd = {.fd = o->fd, .events = POLLOUT};
                ssize_t n;
                int r;

                if (g_cancellable_is_cancelled(o->cancellable)) {
                        g_set_error(&o->error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "The push was cancelled");
                        o->failed = TRUE;
                        return -1;
                }
                r = poll(&pfd, 1, 1000);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0) {
                        if (o->timeout_sec-- == 0) {
                                g_set_error(&o->error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                            "Invalid fd: nobody read from it for %u seconds",
                                            o->timeout_init);
                                o->failed = TRUE;
                                return -1;
                        }
                        continue;
                }
                n = write(o->fd, p, left);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0) {
                        /* The caller's descriptor (closed, full, a reader gone): the caller's to fix. */
                        g_set_error(&o->error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                    "Invalid fd: cannot write to it: %s", g_strerror(errno));
                        archive_set_error(a, errno, "write failed");
                        o->failed = TRUE;
                        return -1;
                }
                p += n;
                left -= n;
                o->timeout_sec = o->timeout_init;
        }
        return len;
}

static gboolean push_fail(struct archive *a, PushOut *o, const char *what, GError **error)
{
        if (o->error) {
                g_propagate_error(error, g_steal_pointer(&o->error));
                return FALSE;
        }
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot write %s: %s", what,
                    archive_error_string(a) ?: "?");
        return FALSE;
}

static struct archive_entry *new_file_entry(const char *path, guint64 size, gint64 mtime)
{
        struct archive_entry *e = archive_entry_new();

        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, size);
        archive_entry_set_mtime(e, mtime, 0);
        return e;
}

static gboolean push_bytes(struct archive *a, PushOut *o, const char *path, const char *bytes, gsize len,
                           gint64 mtime, GError **error)
{
        struct archive_entry *e = new_file_entry(path, len, mtime);
        int r = archive_write_header(a, e);

        archive_entry_free(e);
        if (r != ARCHIVE_OK || (len > 0 && archive_write_data(a, bytes, len) != (la_ssize_t)len))
                return push_fail(a, o, path, error);
        return TRUE;
}

static gboolean push_dir(struct archive *a, PushOut *o, const char *path, gint64 mtime, GError **error)
{
        struct archive_entry *e = archive_entry_new();
        int r;

        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        archive_entry_set_mtime(e, mtime, 0);
        r = archive_write_header(a, e);
        archive_entry_free(e);
        return r == ARCHIVE_OK || push_fail(a, o, path, error);
}

static int open_blob(KilnImageStore *s, const char *digest, GError **error)
{
        int fd = digest_is_valid(digest) ? openat(s->blobs_fd, digest + 7, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                                         : -1;

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Blob %s of the image is missing",
                            digest);
        return fd;
}

/* The stored blob as it is. */
static gboolean push_blob(KilnImageStore *s, struct archive *a, PushOut *o, const char *path,
                          const char *digest, guint64 size, gint64 mtime, char *buf, GError **error)
{
        _cleanup_close_ int fd = open_blob(s, digest, error);
        struct archive_entry *e;
        guint64 done = 0;
        int r;

        if (fd < 0)
                return FALSE;
        e = new_file_entry(path, size, mtime);
        r = archive_write_header(a, e);
        archive_entry_free(e);
        if (r != ARCHIVE_OK)
                return push_fail(a, o, path, error);
        while (done < size) {
                ssize_t n = read(fd, buf, MIN((guint64)COPY_CHUNK, size - done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot read blob %s", digest);
                        return FALSE;
                }
                if (archive_write_data(a, buf, n) != n)
                        return push_fail(a, o, path, error);
                done += n;
        }
        return TRUE;
}

/* The stored blob decompressed (docker-archive's layer.tar): tar_size bytes. */
static gboolean push_blob_uncompressed(KilnImageStore *s, struct archive *a, PushOut *o, const char *path,
                                       const KilnImageLayer *l, gint64 mtime, GError **error)
{
        _cleanup_close_ int fd = open_blob(s, l->digest, error);
        struct archive *in = NULL;
        struct archive_entry *e, *ie;
        guint64 done = 0;
        gboolean ok = FALSE;
        int r;

        if (fd < 0)
                return FALSE;
        in = archive_read_new();
        archive_read_support_filter_all(in);
        archive_read_support_format_raw(in);
        if (archive_read_open_fd(in, fd, COPY_CHUNK) != ARCHIVE_OK ||
            archive_read_next_header(in, &ie) != ARCHIVE_OK) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot read blob %s: %s", l->digest,
                            archive_error_string(in) ?: "?");
                goto out;
        }
        e = new_file_entry(path, l->tar_size, mtime);
        r = archive_write_header(a, e);
        archive_entry_free(e);
        if (r != ARCHIVE_OK) {
                push_fail(a, o, path, error);
                goto out;
        }
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t offset;

                r = archive_read_data_block(in, &buf, &len, &offset);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK || done + len > l->tar_size) {
                        g_set_error(
                                error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot read blob %s: %s", l->digest,
                                r != ARCHIVE_OK ? archive_error_string(in) ?: "?" : "longer than recorded");
                        goto out;
                }
                if (len > 0 && archive_write_data(a, buf, len) != (la_ssize_t)len) {
                        push_fail(a, o, path, error);
                        goto out;
                }
                done += len;
        }
        if (done != l->tar_size) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "Blob %s is shorter than recorded",
                            l->digest);
                goto out;
        }
        ok = TRUE;
out:
        archive_read_free(in);
        return ok;
}

/* @l as a blob compressed with @c: @l itself when it is so already (or @c is none); else made from the
 * stored tar once, and remembered (STATE/images/bases/<tar hex>-<c>). */
static KilnImageLayer *compressed_layer(KilnImageStore *s, const KilnImageLayer *l, KilnCompression c,
                                        GCancellable *cancellable, GError **error)
{
        KilnLayerWriteResult res = {0};
        _cleanup_close_ int in = -1, out = -1;
        KilnImageLayer *z;

        if (l->compression == c || l->compression != KILN_COMPRESSION_NONE)
                return layer_copy(l);
        z = kiln_image_store_lookup_base(s, l->digest + 7, c);
        if (z)
                return z;
        in = open_blob(s, l->digest, error);
        if (in < 0 || (out = kiln_image_store_tmpfile(s, error)) < 0)
                return NULL;
        if (!kiln_layer_compress(in, out, c, &res, cancellable, error))
                return NULL;
        z = g_new0(KilnImageLayer, 1);
        z->digest = g_strconcat("sha256:", res.blob_digest, NULL);
        z->diff_id = g_strdup(l->diff_id);
        z->size = res.blob_size;
        z->tar_size = res.tar_size;
        z->compression = c;
        if (!kiln_image_store_link_blob(s, out, z->digest, error)) {
                kiln_image_layer_free(z);
                return NULL;
        }
        kiln_image_store_remember_base(s, l->digest + 7, z);
        return z;
}

static char *oci_index_json(const char *manifest_digest, gsize manifest_size, const char *ref_name)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();

        json_builder_begin_object(jb);
        add_int(jb, "schemaVersion", 2);
        json_builder_set_member_name(jb, "manifests");
        json_builder_begin_array(jb);
        json_builder_begin_object(jb);
        add_string(jb, "mediaType", KILN_MEDIA_OCI_MANIFEST);
        add_string(jb, "digest", manifest_digest);
        add_int(jb, "size", manifest_size);
        if (ref_name) {
                json_builder_set_member_name(jb, "annotations");
                json_builder_begin_object(jb);
                add_string(jb, "org.opencontainers.image.ref.name", ref_name);
                json_builder_end_object(jb);
        }
        json_builder_end_object(jb);
        json_builder_end_array(jb);
        json_builder_end_object(jb);
        return generate(jb);
}

static char *docker_manifest_json(const KilnImage *image, const char *repo_tag)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autofree char *config = g_strconcat(image->config_digest + 7, ".json", NULL);

        json_builder_begin_array(jb);
        json_builder_begin_object(jb);
        add_string(jb, "Config", config);
        json_builder_set_member_name(jb, "RepoTags");
        json_builder_begin_array(jb);
        if (repo_tag)
                json_builder_add_string_value(jb, repo_tag);
        json_builder_end_array(jb);
        json_builder_set_member_name(jb, "Layers");
        json_builder_begin_array(jb);
        for (guint i = 0; i < image->layers->len; i++) {
                const KilnImageLayer *l = image->layers->pdata[i];
                g_autofree char *p = g_strconcat(l->diff_id + 7, "/layer.tar", NULL);
                json_builder_add_string_value(jb, p);
        }
        json_builder_end_array(jb);
        json_builder_end_object(jb);
        json_builder_end_array(jb);
        return generate(jb);
}

gboolean kiln_image_push(KilnImageStore *s, const KilnImage *image, const char *format, const char *ref_name,
                         int fd, guint write_timeout_sec, GCancellable *cancellable, GError **error)
{
        PushOut o = {.fd = fd,
                     .timeout_sec = write_timeout_sec,
                     .timeout_init = write_timeout_sec,
                     .cancellable = cancellable};
        struct archive *a = archive_write_new();
        g_autofree char *buf = g_malloc(COPY_CHUNK);
        gint64 mtime = image->created_usec / G_USEC_PER_SEC;
        const char *ref = ref_name ? ref_name : (image->names && image->names[0] ? image->names[0] : NULL);
        gboolean ok = FALSE;
        gsize clen = strlen(image->config_json);

        if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_open2(a, &o, NULL, on_push_bytes, NULL, NULL) != ARCHIVE_OK) {
                push_fail(a, &o, "the archive", error);
                goto out;
        }
        if (g_str_equal(format, "oci-archive")) {
                /* The stored manifest when the image was committed as OCI; else the same layers and config
                 * under OCI media types (a docker-format zstd layer cannot exist: Commit refuses it). */
                g_autofree char *manifest = NULL, *hex = NULL, *mdigest = NULL, *index = NULL, *mpath = NULL;
                gsize mlen;

                g_autoptr(GPtrArray) layers = g_ptr_array_new_with_free_func(kiln_image_layer_free);

                /* Layers are stored as tar; each is compressed as the image asks the first time it is
                 * pushed, and the compressed blob kept for the next push. */
                for (guint i = 0; i < image->layers->len; i++) {
                        KilnImageLayer *l = compressed_layer(s, image->layers->pdata[i], image->compression,
                                                             cancellable, error);
                        if (!l)
                                goto out;
                        g_ptr_array_add(layers, l);
                }
                manifest = kiln_image_manifest_json("oci", image->config_digest, clen, layers);
                mlen = strlen(manifest);
                hex = g_compute_checksum_for_string(G_CHECKSUM_SHA256, manifest, mlen);
                mdigest = g_strconcat("sha256:", hex, NULL);
                index = oci_index_json(mdigest, mlen, ref);
                mpath = g_strconcat("blobs/sha256/", mdigest + 7, NULL);
                if (!push_bytes(a, &o, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30, mtime,
                                error) ||
                    !push_bytes(a, &o, "index.json", index, strlen(index), mtime, error) ||
                    !push_dir(a, &o, "blobs/", mtime, error) ||
                    !push_dir(a, &o, "blobs/sha256/", mtime, error))
                        goto out;
                for (guint i = 0; i < layers->len; i++) {
                        const KilnImageLayer *l = layers->pdata[i];
                        g_autofree char *p = g_strconcat("blobs/sha256/", l->digest + 7, NULL);
                        if (!push_blob(s, a, &o, p, l->digest, l->size, mtime, buf, error))
                                goto out;
                }
                {
                        g_autofree char *cpath =
                                g_strconcat("blobs/sha256/", image->config_digest + 7, NULL);
                        if (!push_bytes(a, &o, cpath, image->config_json, clen, mtime, error) ||
                            !push_bytes(a, &o, mpath, manifest, mlen, mtime, error))
                                goto out;
                }
        } else {
                g_autofree char *manifest = docker_manifest_json(image, ref);
                g_autofree char *cpath = g_strconcat(image->config_digest + 7, ".json", NULL);

                for (guint i = 0; i < image->layers->len; i++) {
                        const KilnImageLayer *l = image->layers->pdata[i];
                        g_autofree char *dir = g_strconcat(l->diff_id + 7, "/", NULL);
                        g_autofree char *p = g_strconcat(dir, "layer.tar", NULL);
                        if (!push_dir(a, &o, dir, mtime, error))
                                goto out;
                        if (l->compression == KILN_COMPRESSION_NONE
                                    ? !push_blob(s, a, &o, p, l->digest, l->size, mtime, buf, error)
                                    : !push_blob_uncompressed(s, a, &o, p, l, mtime, error))
                                goto out;
                }
                if (!push_bytes(a, &o, cpath, image->config_json, clen, mtime, error) ||
                    !push_bytes(a, &o, "manifest.json", manifest, strlen(manifest), mtime, error))
                        goto out;
        }
        if (archive_write_close(a) != ARCHIVE_OK) {
                push_fail(a, &o, "the end of the archive", error);
                goto out;
        }
        ok = TRUE;
out:
        o.failed = !ok;
        archive_write_free(a);
        g_clear_error(&o.error);
        return ok;
}
