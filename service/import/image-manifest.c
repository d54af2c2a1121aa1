/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: the image's documents (image-private.h). Digests, bounded JSON, the
 * platform, and an OCI index → manifest → config → layers, for a layout and an oci-archive alike. */

#include <inttypes.h>
#include <string.h>
#include <sys/utsname.h>

#include "base/fs-util.h"
#include "image-private.h"
#include "base/kiln-common.h"
#include "layer-digest.h"

/* ---- hex digests ---- */

void image_hex_of(GChecksum *c, char out[65])
{
        g_strlcpy(out, g_checksum_get_string(c), 65);
}

/* "sha256:<64 hex>" → the hex part; NULL for anything else (other algorithms are refused by name). */
const char *image_digest_hex(Image *im, const char *digest, const char *what)
{
        if (!digest || !g_str_has_prefix(digest, "sha256:") || !kiln_hex64_is_valid(digest + 7)) {
                g_autofree char *d =
                        digest ? kiln_escape_for_message(digest, MIN(strlen(digest), 100)) : NULL;
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: digest '%s' is not sha256:<64 hex digits>",
                           what, d ? d : "(none)");
                return NULL;
        }
        return digest + 7;
}

/* ---- JSON ---- */

JsonNode *image_parse_json(Image *im, GBytes *bytes, const char *what)
{
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GError) error = NULL;
        gsize len;
        const char *data = g_bytes_get_data(bytes, &len);

        if (len > JSON_MAX) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: more than %d bytes", what, JSON_MAX);
                return NULL;
        }
        if (!json_parser_load_from_data(parser, data, (gssize)len, &error)) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: not JSON: %s", what, error->message);
                return NULL;
        }
        if (!json_parser_get_root(parser) || (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)) &&
                                              !JSON_NODE_HOLDS_ARRAY(json_parser_get_root(parser)))) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: not a JSON object", what);
                return NULL;
        }
        return json_node_copy(json_parser_get_root(parser));
}

const char *image_obj_string(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

JsonObject *image_obj_object(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *image_obj_array(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

gint64 image_obj_int(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return -1;
        return json_node_get_int(n);
}

/* ---- platform ---- */

void image_host_platform(char **os, char **arch, char **variant)
{
        struct utsname u;
        const char *m = "";
        static const struct {
                const char *machine, *arch, *variant;
        } table[] = {
                {"x86_64", "amd64", NULL},
                {"aarch64", "arm64", NULL},
                {"armv7l", "arm", "v7"},
                {"armv6l", "arm", "v6"},
                {"i686", "386", NULL},
                {"i386", "386", NULL},
                {"ppc64le", "ppc64le", NULL},
                {"s390x", "s390x", NULL},
                {"riscv64", "riscv64", NULL},
                {"mips64", "mips64le", NULL},
                {"loongarch64", "loong64", NULL},
        };

        if (uname(&u) == 0)
                m = u.machine;
        *os = g_strdup("linux");
        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (g_str_equal(m, table[i].machine)) {
                        *arch = g_strdup(table[i].arch);
                        *variant = g_strdup(table[i].variant);
                        return;
                }
        *arch = g_strdup(m);
        *variant = NULL;
}

static bool platform_matches(const ImageOptions *o, JsonObject *platform)
{
        const char *os = image_obj_string(platform, "os"),
                   *arch = image_obj_string(platform, "architecture");
        const char *variant = image_obj_string(platform, "variant");

        if (!os || !arch || !g_str_equal(os, o->os) || !g_str_equal(arch, o->arch))
                return false;
        return !o->variant || (variant && g_str_equal(variant, o->variant));
}

/* ---- manifests and configs ---- */

static bool is_index(JsonObject *o, const char *media_type)
{
        return (media_type &&
                (g_str_equal(media_type, "application/vnd.oci.image.index.v1+json") ||
                 g_str_equal(media_type, "application/vnd.docker.distribution.manifest.list.v2+json"))) ||
               image_obj_array(o, "manifests") != NULL;
}

/* The descriptor of index @index to follow: the one named @ref (annotation
 * org.opencontainers.image.ref.name), else the only one, else the one of our platform. */
static JsonObject *pick_descriptor(Image *im, JsonObject *index, const char *ref, const char *what)
{
        JsonArray *manifests = image_obj_array(index, "manifests");
        g_autoptr(GPtrArray) candidates = g_ptr_array_new();
        JsonObject *match = NULL;
        guint n_platform = 0;

        if (!manifests) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s: no manifests", what);
                return NULL;
        }
        for (guint i = 0; i < json_array_get_length(manifests); i++) {
                JsonNode *n = json_array_get_element(manifests, i);
                JsonObject *d = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
                const char *name;

                if (!d)
                        continue;
                name = image_obj_string(image_obj_object(d, "annotations"),
                                        "org.opencontainers.image.ref.name");
                if (ref && (!name || !g_str_equal(name, ref)))
                        continue;
                g_ptr_array_add(candidates, d);
        }
        if (candidates->len == 0) {
                g_autofree char *r = ref ? kiln_escape_for_message(ref, strlen(ref)) : NULL;
                if (ref)
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s names no image '%s'", what, r);
                else
                        image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s names no image", what);
                return NULL;
        }
        if (candidates->len == 1 && !image_obj_object(candidates->pdata[0], "platform"))
                return candidates->pdata[0];
        for (guint i = 0; i < candidates->len; i++) {
                JsonObject *p = image_obj_object(candidates->pdata[i], "platform");
                if (p)
                        n_platform++;
                if (p && platform_matches(im->o, p) && !match)
                        match = candidates->pdata[i];
        }
        if (match)
                return match;
        if (candidates->len == 1)
                return candidates->pdata[0]; /* an image with a platform: checked against its config */
        if (n_platform > 0)
                image_fail(im, KILN_IMPORT_EXIT_NOT_FOUND, "%s has no image for platform %s/%s%s%s", what,
                           im->o->os, im->o->arch, im->o->variant ? "/" : "",
                           im->o->variant ? im->o->variant : "");
        else
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "%s names %u images: name one (SOURCE:REF)", what,
                           candidates->len);
        return NULL;
}

/* A JSON blob of the image, by digest: from the layout (as the caller) or from the archive's memory. */
static GBytes *get_json_blob(Image *im, const char *hex, gint64 size, const char *what)
{
        char got[65];
        GBytes *bytes = NULL;

        if (im->root_fd >= 0 && !im->small) {
                g_autofree char *name = g_strconcat("blobs/sha256/", hex, NULL);
                _cleanup_close_ int fd = image_open_in_layout(im, name);
                BlobReader r;

                if (fd < 0)
                        return NULL;
                image_blob_reader_init(&r, im);
                r.fd = fd;
                bytes = image_read_small(im, &r, JSON_MAX, what, got);
                image_blob_reader_clear(&r);
        } else {
                g_autofree char *name = g_strconcat("blobs/sha256/", hex, NULL);
                Small *s = g_hash_table_lookup(im->small, name);

                if (!s) {
                        image_fail(im,
                                   g_hash_table_contains(im->large, name) ? KILN_IMPORT_EXIT_INVALID
                                                                          : KILN_IMPORT_EXIT_NOT_FOUND,
                                   "%s sha256:%s: %s", what, hex,
                                   g_hash_table_contains(im->large, name) ? "larger than 1 MiB"
                                                                          : "not in the archive");
                        return NULL;
                }
                g_strlcpy(got, s->hex, sizeof(got));
                bytes = g_bytes_ref(s->data);
        }
        if (!bytes)
                return NULL;
        if (!g_str_equal(got, hex)) {
                g_bytes_unref(bytes);
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "%s: its bytes hash to sha256:%s, not to its digest sha256:%s", what, got, hex);
                return NULL;
        }
        if (size >= 0 && (gint64)g_bytes_get_size(bytes) != size) {
                g_bytes_unref(bytes);
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "%s: %zu bytes, its descriptor says %" G_GINT64_FORMAT, what,
                           g_bytes_get_size(bytes), size);
                return NULL;
        }
        return bytes;
}

/* The config's diff_ids (hex), checked against the layer count and the bound. */
GPtrArray *image_config_diff_ids(Image *im, JsonObject *config, guint n_layers)
{
        JsonArray *ids = image_obj_array(image_obj_object(config, "rootfs"), "diff_ids");
        g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
        guint n = ids ? json_array_get_length(ids) : 0;

        if (!ids) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: no rootfs.diff_ids");
                return NULL;
        }
        if (n > im->o->max_layers) {
                image_fail(im, KILN_IMPORT_EXIT_LIMIT,
                           "the image has %u layers, more than [Limits] LayersPerImage=%" PRIu64, n,
                           im->o->max_layers);
                return NULL;
        }
        if (n != n_layers) {
                image_fail(im, KILN_IMPORT_EXIT_INVALID,
                           "the manifest names %u layers, the config %u diff_ids", n_layers, n);
                return NULL;
        }
        for (guint i = 0; i < n; i++) {
                JsonNode *node = json_array_get_element(ids, i);
                const char *d =
                        JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
                                ? json_node_get_string(node)
                                : NULL;
                const char *hex = image_digest_hex(im, d, "image config diff_ids");
                if (!hex)
                        return NULL;
                g_ptr_array_add(out, g_strdup(hex));
        }
        return g_steal_pointer(&out);
}

/* Checks the chosen image's platform when one was asked for and the config says one. */
int image_check_platform(Image *im, JsonObject *config)
{
        const char *os = image_obj_string(config, "os"), *arch = image_obj_string(config, "architecture");

        if (os && arch && (!g_str_equal(os, im->o->os) || !g_str_equal(arch, im->o->arch)))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                  "the image is for %s/%s, not %s/%s (platform)", os, arch, im->o->os,
                                  im->o->arch);
        return 0;
}

int image_read_oci(Image *im, GBytes *index_bytes, LayerFunc layer)
{
        g_autoptr(JsonNode) index = image_parse_json(im, index_bytes, "index.json");
        g_autoptr(JsonNode) manifest = NULL, config = NULL;
        g_autoptr(GBytes) manifest_bytes = NULL, config_bytes = NULL;
        g_autoptr(GPtrArray) diff_ids = NULL;
        JsonObject *desc, *m, *cdesc;
        JsonArray *layers;
        char hex[65]; /* a copy: the document it came from is freed when an index is followed */
        const char *h, *chex;
        const char *ref = im->o->ref;

        if (!index || !JSON_NODE_HOLDS_OBJECT(index))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "index.json: not a JSON object");
        m = json_node_get_object(index);
        for (int depth = 0;; depth++) {
                g_autoptr(JsonNode) next = NULL;

                desc = pick_descriptor(im, m, depth == 0 ? ref : NULL,
                                       depth == 0 ? "index.json" : "image index");
                if (!desc)
                        return -1;
                h = image_digest_hex(im, image_obj_string(desc, "digest"), "manifest descriptor");
                if (!h)
                        return -1;
                g_strlcpy(hex, h, sizeof(hex));
                g_clear_pointer(&manifest_bytes, g_bytes_unref);
                manifest_bytes = get_json_blob(im, hex, image_obj_int(desc, "size"), "manifest");
                if (!manifest_bytes)
                        return -1;
                next = image_parse_json(im, manifest_bytes, "manifest");
                if (!next || !JSON_NODE_HOLDS_OBJECT(next))
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest sha256:%s: not an object",
                                          hex);
                g_clear_pointer(&manifest, json_node_unref);
                manifest = g_steal_pointer(&next);
                m = json_node_get_object(manifest);
                if (!is_index(m, image_obj_string(m, "mediaType")))
                        break;
                if (depth + 1 >= INDEX_DEPTH_MAX)
                        return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image indexes nested too deep");
        }
        im->digest = g_strconcat("sha256:", hex, NULL);

        cdesc = image_obj_object(m, "config");
        chex = image_digest_hex(im, image_obj_string(cdesc, "digest"), "manifest config");
        if (!chex)
                return -1;
        config_bytes = get_json_blob(im, chex, image_obj_int(cdesc, "size"), "image config");
        if (!config_bytes)
                return -1;
        config = image_parse_json(im, config_bytes, "image config");
        if (!config || !JSON_NODE_HOLDS_OBJECT(config))
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "image config: not an object");
        if (image_check_platform(im, json_node_get_object(config)) < 0)
                return -1;
        layers = image_obj_array(m, "layers");
        if (!layers)
                return image_fail(im, KILN_IMPORT_EXIT_INVALID, "manifest: no layers");
        diff_ids = image_config_diff_ids(im, json_node_get_object(config), json_array_get_length(layers));
        if (!diff_ids)
                return -1;
        /* The progress's total: the layers' sizes as the manifest says (an archive's was its size). */
        if (!im->small) /* an archive's layers were unpacked while it streamed */
                im->progress.layers = diff_ids->len;
        for (guint i = 0; i < diff_ids->len && im->progress.total == 0; i++) {
                JsonNode *n = json_array_get_element(layers, i);
                gint64 size =
                        image_obj_int(JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL, "size");
                im->progress.total += size > 0 ? (uint64_t)size : 0;
        }
        for (guint i = 0; i < diff_ids->len; i++) {
                JsonNode *n = json_array_get_element(layers, i);
                JsonObject *l = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
                const char *bhex = image_digest_hex(im, image_obj_string(l, "digest"), "manifest layer");

                if (!bhex || layer(im, i, bhex, image_obj_int(l, "size"), diff_ids->pdata[i]) < 0)
                        return -1;
                if (!im->small) {
                        im->progress.layer = i + 1;
                        image_progress(im, true);
                }
        }
        im->config = g_steal_pointer(&config);
        return 0;
}
