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
