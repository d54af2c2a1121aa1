/* SPDX-License-Identifier: Apache-2.0 */
#include <sys/random.h>

#include "objects/builder.h"
#include "base/kiln-common.h"
#include "base/validate.h"

#define METADATA_FILE "builder.json"
#define METADATA_VERSION 1
#define METADATA_MAX_SIZE (4 * 1024 * 1024)

KilnBuilder *kiln_builder_new(const char *id, const char *name, uid_t owner, const char *from,
                              const char *layer, guint64 created_usec)
{
        KilnBuilder *b = g_new0(KilnBuilder, 1);

        b->id = g_strdup(id);
        b->name = g_strdup(name);
        b->owner = owner;
        b->from = g_strdup(from);
        b->layer = g_strdup(layer);
        b->layers = g_new0(char *, 2);
        b->layers[0] = g_strdup(layer);
        b->created_usec = created_usec;
        b->object_path = kiln_builder_object_path(id);
        return b;
}

void kiln_builder_free(KilnBuilder *b)
{
        if (!b)
                return;
        g_free(b->id);
        g_free(b->name);
        g_free(b->from);
        g_free(b->layer);
        g_strfreev(b->layers);
        g_free(b->image);
        g_strfreev(b->image_volumes);
        kiln_builder_config_clear(&b->config);
        g_free(b->object_path);
        g_free(b->mount_path);
        /* The manager unmounts a lingering mount before it lets a builder go; the timer must not
         * outlive the builder it points to even if something forgot. */
        g_clear_handle_id(&b->rootfs_linger_source, g_source_remove);
        g_clear_pointer(&b->rootfs_uid_map, g_array_unref);
        g_clear_pointer(&b->rootfs_gid_map, g_array_unref);
        sd_bus_message_unref(b->pending_remove);
        g_free(b);
}

void kiln_builder_set_layers(KilnBuilder *b, const char *const *layers)
{
        guint n = g_strv_length((char **)layers);

        g_return_if_fail(n > 0);
        g_strfreev(b->layers);
        b->layers = g_strdupv((char **)layers);
        g_free(b->layer);
        b->layer = g_strdup(layers[n - 1]);
}

#define IMAGE_VOLUMES_MAX 64

/* An image volume is made inside the root file system (kiln_rootfs_mkdir_p resolves it there): an
 * absolute path without "..", of a bounded length. Others are dropped. */
static gboolean image_volume_is_valid(const char *v)
{
        g_auto(GStrv) parts = NULL;

        if (!g_path_is_absolute(v) || strlen(v) > 1024 || !g_utf8_validate(v, -1, NULL))
                return FALSE;
        parts = g_strsplit(v, "/", -1);
        for (char **p = parts; *p; p++)
                if (g_str_equal(*p, ".."))
                        return FALSE;
        return TRUE;
}

void kiln_builder_set_image(KilnBuilder *b, const char *image)
{
        g_autoptr(JsonNode) node = image ? json_from_string(image, NULL) : NULL;
        g_autoptr(GStrvBuilder) volumes = g_strv_builder_new();
        JsonObject *o = node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        JsonNode *v = o ? json_object_get_member(o, "Volumes") : NULL;
        guint n = 0;

        g_free(b->image);
        b->image = g_strdup(image);
        g_clear_pointer(&b->image_volumes, g_strfreev);
        if (v && JSON_NODE_HOLDS_OBJECT(v)) {
                g_autoptr(GList) keys = json_object_get_members(json_node_get_object(v));
                for (GList *k = keys; k && n < IMAGE_VOLUMES_MAX; k = k->next)
                        if (image_volume_is_valid(k->data)) {
                                g_strv_builder_add(volumes, k->data);
                                n++;
                        }
        }
        b->image_volumes = g_strv_builder_end(volumes);
}

char *kiln_builder_object_path(const char *id)
{
        /* DESIGN.md's path is .../builder/<id>. Ids are checked hex before they get here, and hex is a
         * valid object path element as it is, so no escaping is needed (sd_bus_path_encode would
         * escape a leading digit). */
        g_assert(kiln_id_is_valid(id));
        return g_strconcat(KILN_BUILDER_PATH_PREFIX "/", id, NULL);
}

char *kiln_generate_id(void)
{
        guint8 bytes[KILN_ID_LENGTH / 2];
        GString *s = g_string_sized_new(KILN_ID_LENGTH);

        /* getrandom() without flags blocks only before the pool is initialised, once per boot. */
        if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
                g_error("getrandom: %s", g_strerror(errno));
        for (size_t i = 0; i < sizeof(bytes); i++)
                g_string_append_printf(s, "%02x", bytes[i]);
        return g_string_free(s, FALSE);
}

char *kiln_builder_to_json(const KilnBuilder *b)
{
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(jb);
        json_builder_set_member_name(jb, "version");
        json_builder_add_int_value(jb, METADATA_VERSION);
        json_builder_set_member_name(jb, "id");
        json_builder_add_string_value(jb, b->id);
        json_builder_set_member_name(jb, "name");
        json_builder_add_string_value(jb, b->name);
        json_builder_set_member_name(jb, "owner");
        json_builder_add_int_value(jb, b->owner);
        json_builder_set_member_name(jb, "from");
        json_builder_add_string_value(jb, b->from);
        json_builder_set_member_name(jb, "layer");
        json_builder_add_string_value(jb, b->layer);
        /* "layer" stays the top one, so a kilnd that knows only one layer still names a layer that
         * exists; "layers" is written only when there are several. */
        if (g_strv_length(b->layers) > 1) {
                json_builder_set_member_name(jb, "layers");
                json_builder_begin_array(jb);
                for (char **l = b->layers; *l; l++)
                        json_builder_add_string_value(jb, *l);
                json_builder_end_array(jb);
        }
        if (b->image) {
                g_autoptr(JsonNode) image = json_from_string(b->image, NULL);
                if (image) {
                        json_builder_set_member_name(jb, "image");
                        json_builder_add_value(jb, g_steal_pointer(&image));
                }
        }
        if (b->layer_shifted) {
                json_builder_set_member_name(jb, "layer_shifted");
                json_builder_add_boolean_value(jb, TRUE);
        }
        json_builder_set_member_name(jb, "created");
        json_builder_add_int_value(jb, (gint64)b->created_usec);
        json_builder_set_member_name(jb, "config");
        json_builder_begin_object(jb);
        kiln_builder_config_to_json(&b->config, jb);
        json_builder_end_object(jb);
        json_builder_end_object(jb);

        root = json_builder_get_root(jb);
        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, TRUE);
        return json_generator_to_data(gen, NULL);
}

static gboolean metadata_invalid(GError **error, const char *what)
{
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "builder.json: %s", what);
        return FALSE;
}

static const char *member_string(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

static gboolean member_int(JsonObject *o, const char *name, gint64 min, gint64 max, gint64 *ret)
{
        JsonNode *n = json_object_get_member(o, name);

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return FALSE;
        *ret = json_node_get_int(n);
        return *ret >= min && *ret <= max;
}

KilnBuilder *kiln_builder_from_json(const char *json, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(KilnBuilder) b = NULL;
        JsonObject *root, *config;
        const char *id, *name, *from, *layer;
        gint64 version, owner, created;

        if (!json_parser_load_from_data(parser, json, -1, error))
                return NULL;
        if (!json_parser_get_root(parser) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
                metadata_invalid(error, "not a JSON object");
                return NULL;
        }
        root = json_node_get_object(json_parser_get_root(parser));
        if (!member_int(root, "version", METADATA_VERSION, METADATA_VERSION, &version)) {
                metadata_invalid(error, "unknown version");
                return NULL;
        }
        id = member_string(root, "id");
        name = member_string(root, "name");
        from = member_string(root, "from");
        layer = member_string(root, "layer");
        if (!id || !kiln_id_is_valid(id) || !name || !kiln_validate_name("name", name, NULL) || !from ||
            !layer || !kiln_id_is_valid(layer) || !member_int(root, "owner", 0, G_MAXUINT32 - 1, &owner) ||
            !member_int(root, "created", 0, G_MAXINT64, &created)) {
                metadata_invalid(error, "id, name, owner, from, layer or created is missing or invalid");
                return NULL;
        }
        b = kiln_builder_new(id, name, (uid_t)owner, from, layer, (guint64)created);
        if (json_object_has_member(root, "layers")) {
                JsonNode *n = json_object_get_member(root, "layers");
                JsonArray *a = JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
                guint len = a ? json_array_get_length(a) : 0;
                g_autoptr(GStrvBuilder) layers = g_strv_builder_new();
                g_auto(GStrv) strv = NULL;

                for (guint i = 0; i < len; i++) {
                        JsonNode *e = json_array_get_element(a, i);
                        const char *l =
                                JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING
                                        ? json_node_get_string(e)
                                        : NULL;
                        if (!l || !kiln_id_is_valid(l))
                                break;
                        g_strv_builder_add(layers, l);
                }
                strv = g_strv_builder_end(layers);
                if (len == 0 || g_strv_length(strv) != len || !g_str_equal(strv[len - 1], layer)) {
                        metadata_invalid(error, "layers is not a list of layer digests ending with layer");
                        return NULL;
                }
                kiln_builder_set_layers(b, (const char *const *)strv);
        }
        if (json_object_has_member(root, "image")) {
                JsonNode *n = json_object_get_member(root, "image");
                if (JSON_NODE_HOLDS_OBJECT(n)) {
                        g_autofree char *image = json_to_string(n, FALSE);
                        kiln_builder_set_image(b, image);
                }
        }
        b->layer_shifted = json_object_has_member(root, "layer_shifted") &&
                           json_object_get_boolean_member(root, "layer_shifted");
        if (json_object_has_member(root, "config")) {
                if (!JSON_NODE_HOLDS_OBJECT(json_object_get_member(root, "config"))) {
                        metadata_invalid(error, "config is not an object");
                        return NULL;
                }
                config = json_object_get_object_member(root, "config");
                if (!kiln_builder_config_from_json(&b->config, config, error))
                        return NULL;
        }
        return g_steal_pointer(&b);
}

gboolean kiln_builder_save(const KilnBuilder *b, const char *dir, GError **error)
{
        g_autofree char *json = kiln_builder_to_json(b);
        g_autofree char *path = g_build_filename(dir, METADATA_FILE, NULL);

        /* CONSISTENT+DURABLE: written to a temporary file, fsynced and renamed over the old one, so a
         * crash leaves either the old or the new metadata, never a torn file. */
        return g_file_set_contents_full(
                path, json, -1, G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600, error);
}

KilnBuilder *kiln_builder_load(const char *dir, GError **error)
{
        g_autofree char *path = g_build_filename(dir, METADATA_FILE, NULL);
        g_autofree char *json = NULL;
        gsize length;

        if (!g_file_get_contents(path, &json, &length, error))
                return NULL;
        if (length > METADATA_MAX_SIZE) {
                metadata_invalid(error, "file too large");
                return NULL;
        }
        return kiln_builder_from_json(json, error);
}
