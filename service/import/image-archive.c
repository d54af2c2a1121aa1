/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: oci-archive: and docker-archive: (image-private.h), read in one pass as
 * the caller opened them: small entries kept in memory, large ones unpacked as layers as they stream. */

#include <archive_entry.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs-util.h"
#include "image-private.h"
#include "layer-digest.h"

/* ---- archives ---- */

void image_small_free(gpointer p)
{
        Small *s = p;
        g_bytes_unref(s->data);
        g_free(s);
}

void image_large_free(gpointer p)
{
        Large *l = p;
        g_free(l->error);
        g_free(l);
}

/* An entry's path as a key: no leading "./" or "/", no empty or "." components; NULL for ".." ones. */
static char *archive_key(const char *path)
{
        g_auto(GStrv) parts = g_strsplit(path, "/", -1);
        GString *s = g_string_new(NULL);

        for (size_t i = 0; parts[i]; i++) {
                if (!parts[i][0] || g_str_equal(parts[i], "."))
                        continue;
                if (g_str_equal(parts[i], "..")) {
                        g_string_free(s, TRUE);
                        return NULL;
                }
                if (s->len)
                        g_string_append_c(s, '/');
                g_string_append(s, parts[i]);
        }
        return g_string_free(s, FALSE);
}

/* One pass over the archive: small entries into memory, large ones unpacked as they stream. */
static int stream_archive(Image *im)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        guint n_large = 0;
        struct stat st;
        int r, ret = 0;

        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        archive_read_support_filter_all(a);
        /* The progress while the archive streams: its entries' bytes of its size, layers unknown. */
        if (fstat(im->root_fd, &st) == 0)
                im->progress.total = (uint64_t)st.st_size;
        if (archive_read_open_fd(a, im->root_fd, READ_BUFFER_SIZE) != ARCHIVE_OK) {
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s", archive_error_string(a));
                goto out;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                const char *path = archive_entry_pathname(e);
                g_autofree char *key = path ? archive_key(path) : NULL;
                BlobReader br;

                if (image_terminating) {
                        ret = image_fail(im, KILN_IMPORT_EXIT_FAILED, "stopped");
                        goto out;
                }
                if (!key || !key[0] || archive_entry_filetype(e) != AE_IFREG ||
                    g_hash_table_contains(im->small, key) || g_hash_table_contains(im->large, key))
                        continue; /* not a file the image can name; a repeated name keeps the first */
                image_blob_reader_init(&br, im);
                br.archive = a;
                br.counts = true;
                if (archive_entry_size_is_set(e) && archive_entry_size(e) <= SMALL_BLOB_MAX) {
                        Small *s = g_new0(Small, 1);

                        im->small_total += (uint64_t)archive_entry_size(e);
                        if (im->small_total > SMALL_TOTAL_MAX) {
                                g_free(s);
                                image_blob_reader_clear(&br);
                                ret = image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                                 "the archive holds more than %d bytes of small files",
                                                 SMALL_TOTAL_MAX);
                                goto out;
                        }
                        s->data = image_read_small(im, &br, SMALL_BLOB_MAX, key, s->hex);
                        image_blob_reader_clear(&br);
                        if (!s->data) {
                                g_free(s);
                                ret = -1;
                                goto out;
                        }
                        g_hash_table_insert(im->small, g_steal_pointer(&key), s);
                } else {
                        Large *l = g_new0(Large, 1);
                        g_autofree char *what = NULL;

                        if (++n_large > ARCHIVE_LARGE_MAX) {
                                g_free(l);
                                image_blob_reader_clear(&br);
                                ret = image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                                                 "the archive holds more than %d large files",
                                                 ARCHIVE_LARGE_MAX);
                                goto out;
                        }
                        what = kiln_escape_for_message(key, strlen(key));
                        l->tmp = image_unpack_layer(im, &br, what);
                        if (!l->tmp) {
                                /* A limit or our own failure stops everything; an entry that is not a
                                 * layer stops the import only if the image needs it. */
                                if (im->exit_code != KILN_IMPORT_EXIT_INVALID || br.error) {
                                        g_free(l);
                                        image_blob_reader_clear(&br);
                                        ret = -1;
                                        goto out;
                                }
                                l->error = g_steal_pointer(&im->error);
                                l->error_code = im->exit_code;
                                im->exit_code = 0;
                                if (image_blob_drain(&br) < 0) {
                                        image_large_free(l);
                                        image_blob_reader_clear(&br);
                                        ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s",
                                                         archive_error_string(a));
                                        goto out;
                                }
                        }
                        image_hex_of(br.sha, l->blob_hex);
                        image_blob_reader_clear(&br);
                        g_hash_table_insert(im->large, g_steal_pointer(&key), l);
                        im->progress.layer = n_large; /* of layers not known before the manifest */
                        image_progress(im, true);
                }
        }
        if (r != ARCHIVE_EOF)
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID, "the archive: %s", archive_error_string(a));
out:
        archive_read_free(a);
        return ret;
}

/* Layer @i named by archive path @key: unpacked while streaming, or small and unpacked now. */
static int archive_layer_by_key(Image *im, guint i, const char *key, const char *blob_hex,
                                const char *diff_hex)
{
        Large *l = g_hash_table_lookup(im->large, key);
        Small *s;
        BlobReader r;
        int ret;

        if (l) {
                if (!l->tmp)
                        return image_fail(im, l->error_code, "%s", l->error);
                if (image_check_layer(im, i, blob_hex, l->blob_hex, diff_hex, l->tmp->diff_hex) < 0)
                        return -1;
                /* Stored already: the copy just made is dropped with the other tmp trees. */
                g_ptr_array_add(im->layer_hex, g_strdup(diff_hex));
                g_ptr_array_add(im->layer_tmp, image_layer_exists(im, diff_hex) ? NULL : l->tmp);
                return 0;
        }
        s = g_hash_table_lookup(im->small, key);
        if (!s) {
                g_autofree char *k = kiln_escape_for_message(key, strlen(key));
                return image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "layer %u: '%s' is not in the archive", i,
                                  k);
        }
        image_blob_reader_init(&r, im);
        r.is_mem = true;
        r.mem = g_bytes_get_data(s->data, &r.mem_len);
        ret = image_take_layer(im, i, &r, blob_hex, diff_hex);
        image_blob_reader_clear(&r);
        return ret;
}

static int archive_oci_layer(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex)
{
        g_autofree char *key = g_strconcat("blobs/sha256/", blob_hex, NULL);

        (void)size; /* the digest is checked, which covers the size */
        return archive_layer_by_key(im, i, key, blob_hex, diff_hex);
}

/* A reference without the registry docker and skopeo add: "docker.io/library/x:t" and
 * "docker.io/x/y:t" and "localhost/x:t" are "x:t" and "x/y:t". */
static const char *short_ref(const char *ref)
{
        static const char *const prefixes[] = {"docker.io/library/", "docker.io/", "localhost/"};

        for (size_t i = 0; i < G_N_ELEMENTS(prefixes); i++)
                if (g_str_has_prefix(ref, prefixes[i]))
                        return ref + strlen(prefixes[i]);
        return ref;
}

/* A docker-archive's manifest.json entry to use: NAME:TAG among RepoTags, @N by position, else the
 * only one. */
static JsonObject *pick_docker_entry(Image *im, JsonArray *entries)
{
        const char *ref = im->o->ref;
        guint n = json_array_get_length(entries);

        if (ref && ref[0] == '@') {
                guint64 idx;
                if (!g_ascii_string_to_unsigned(ref + 1, 10, 0, G_MAXUINT32, &idx, NULL) || idx >= n) {
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND,
                                   "manifest.json has no image %s (it has %u)", ref, n);
                        return NULL;
                }
                return json_node_get_object(json_array_get_element(entries, (guint)idx));
        }
        if (!ref) {
                if (n != 1) {
                        image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                   "manifest.json names %u images: name one (docker-archive:FILE:NAME:TAG "
                                   "or @N)",
                                   n);
                        return NULL;
                }
                return json_node_get_object(json_array_get_element(entries, 0));
        }
        for (guint i = 0; i < n; i++) {
                JsonArray *tags = image_obj_array(json_node_get_object(json_array_get_element(entries, i)),
                                                  "RepoTags");
                for (guint j = 0; tags && j < json_array_get_length(tags); j++) {
                        JsonNode *t = json_array_get_element(tags, j);
                        const char *tag =
                                JSON_NODE_HOLDS_VALUE(t) && json_node_get_value_type(t) == G_TYPE_STRING
                                        ? json_node_get_string(t)
                                        : NULL;

                        if (tag && (g_str_equal(tag, ref) || g_str_equal(short_ref(tag), short_ref(ref))))
                                return json_node_get_object(json_array_get_element(entries, i));
                }
        }
        {
                g_autofree char *r = kiln_escape_for_message(ref, strlen(ref));
                image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "manifest.json names no image '%s'", r);
        }
        return NULL;
}

/* The hex digest a docker-archive's file name carries ("<hex>.json", "<hex>.tar", "<hex>/layer.tar" is
 * not one, "blobs/sha256/<hex>"), or NULL. */
static char *name_digest(const char *key, const char *suffix)
{
        const char *base = strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
        g_autofree char *hex = NULL;

        if (g_str_has_prefix(key, "blobs/sha256/"))
                hex = g_strdup(key + strlen("blobs/sha256/"));
        else if (g_str_has_suffix(base, suffix))
                hex = g_strndup(base, strlen(base) - strlen(suffix));
        return hex && kiln_hex64_is_valid(hex) ? g_steal_pointer(&hex) : NULL;
}

static int read_docker_archive(Image *im)
{
        Small *ms = g_hash_table_lookup(im->small, "manifest.json"), *cs;
        g_autoptr(JsonNode) manifest = NULL, config = NULL;
        g_autoptr(GPtrArray) diff_ids = NULL;
        g_autofree char *config_key = NULL, *config_hex = NULL;
        JsonObject *entry;
        JsonArray *layers;

        if (!ms)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "the archive has no manifest.json (not a docker-archive)");
        manifest = image_parse_json(im, ms->data, "manifest.json");
        if (!manifest || !JSON_NODE_HOLDS_ARRAY(manifest))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest.json: not a JSON array");
        entry = pick_docker_entry(im, json_node_get_array(manifest));
        if (!entry)
                return -1;
        config_key =
                image_obj_string(entry, "Config") ? archive_key(image_obj_string(entry, "Config")) : NULL;
        if (!config_key || !(cs = g_hash_table_lookup(im->small, config_key)))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "manifest.json: its Config is not in the archive");
        config_hex = name_digest(config_key, ".json");
        if (config_hex && !g_str_equal(config_hex, cs->hex))
                return image_fail(
                        im, KILN_IMPORT_EXIT_INVALID,
                        "image config '%s': its bytes hash to sha256:%s, not to the digest its name says",
                        config_key, cs->hex);
        config = image_parse_json(im, cs->data, "image config");
        if (!config || !JSON_NODE_HOLDS_OBJECT(config))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: not an object");
        if (image_check_platform(im, json_node_get_object(config)) < 0)
                return -1;
        layers = image_obj_array(entry, "Layers");
        if (!layers)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest.json: no Layers");
        diff_ids = image_config_diff_ids(im, json_node_get_object(config), json_array_get_length(layers));
        if (!diff_ids)
                return -1;
        for (guint i = 0; i < diff_ids->len; i++) {
                JsonNode *n = json_array_get_element(layers, i);
                const char *p = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
                                        ? json_node_get_string(n)
                                        : NULL;
                g_autofree char *key = p ? archive_key(p) : NULL;
                g_autofree char *blob_hex = NULL;

                if (!key)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "manifest.json: Layers[%u] is not a path", i);
                /* Only an OCI-style name is a blob digest; "<hex>.tar" names are diff_ids (checked anyway).
                 */
                if (g_str_has_prefix(key, "blobs/sha256/"))
                        blob_hex = name_digest(key, "");
                if (archive_layer_by_key(im, i, key, blob_hex, diff_ids->pdata[i]) < 0)
                        return -1;
        }
        im->digest = g_strconcat("sha256:", cs->hex, NULL);
        im->config = g_steal_pointer(&config);
        return 0;
}

int image_read_archive(Image *im)
{
        if (stream_archive(im) < 0)
                return -1;
        if (g_str_equal(im->o->kind, "docker-archive"))
                return read_docker_archive(im);
        {
                Small *index = g_hash_table_lookup(im->small, "index.json");
                if (!index)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                          "the archive has no index.json (not an oci-archive)");
                return image_read_oci(im, index->data, archive_oci_layer);
        }
}
