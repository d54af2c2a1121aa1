/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-cli-json.so: everything of the client that reads or writes JSON (json-module.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "bus-client.h"
#include "json-module.h"

/* Type codes as sd_bus_message_peek_type() reports them; it reports the end of a container
 * separately, so the 0 that strchr() would match never reaches these lookups. */
#define BASIC_TYPES "sogbynqiuxtdh"
#define CONTAINER_TYPES "avre"

static int read_json(sd_bus_message *m, JsonNode **ret);

typedef union {
        uint8_t u8;
        int b;
        int16_t s16;
        uint16_t u16;
        int32_t s32;
        uint32_t u32;
        int64_t s64;
        uint64_t u64;
        double d;
        const char *string;
        int fd;
} BasicValue;

static int read_basic(sd_bus_message *m, char type, JsonNode **ret)
{
        JsonNode *node;
        BasicValue v;
        int r;

        if (!strchr(BASIC_TYPES, type))
                return -EBADMSG;
        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;

        node = json_node_alloc();
        switch (type) {
        case SD_BUS_TYPE_STRING:
        case SD_BUS_TYPE_OBJECT_PATH:
        case SD_BUS_TYPE_SIGNATURE:
                json_node_init_string(node, v.string);
                break;
        case SD_BUS_TYPE_BOOLEAN:
                json_node_init_boolean(node, v.b);
                break;
        case SD_BUS_TYPE_BYTE:
                json_node_init_int(node, v.u8);
                break;
        case SD_BUS_TYPE_INT16:
                json_node_init_int(node, v.s16);
                break;
        case SD_BUS_TYPE_UINT16:
                json_node_init_int(node, v.u16);
                break;
        case SD_BUS_TYPE_INT32:
                json_node_init_int(node, v.s32);
                break;
        case SD_BUS_TYPE_UINT32:
                json_node_init_int(node, v.u32);
                break;
        case SD_BUS_TYPE_INT64:
                json_node_init_int(node, v.s64);
                break;
        case SD_BUS_TYPE_UINT64:
                /* JSON numbers in json-glib are gint64; values past that are unheard of here. */
                json_node_init_int(node, (gint64)v.u64);
                break;
        case SD_BUS_TYPE_DOUBLE:
                json_node_init_double(node, v.d);
                break;
        default: /* SD_BUS_TYPE_UNIX_FD */
                json_node_init_null(node);
                break;
        }

        *ret = node;
        return 0;
}

/* A dictionary entry's key, whatever its basic type, as an object member name. */
static int read_key(sd_bus_message *m, char type, char **ret)
{
        g_autoptr(JsonNode) key = NULL;
        int r;

        r = read_basic(m, type, &key);
        if (r < 0)
                return r;

        if (JSON_NODE_HOLDS_NULL(key))
                return -EBADMSG;
        if (json_node_get_value_type(key) == G_TYPE_STRING)
                *ret = json_node_dup_string(key);
        else if (json_node_get_value_type(key) == G_TYPE_BOOLEAN)
                *ret = g_strdup(json_node_get_boolean(key) ? "true" : "false");
        else if (json_node_get_value_type(key) == G_TYPE_DOUBLE)
                *ret = g_strdup_printf("%g", json_node_get_double(key));
        else
                *ret = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(key));
        return 0;
}

static int read_dict(sd_bus_message *m, const char *entry_signature, JsonNode **ret)
{
        g_autoptr(JsonObject) object = json_object_new();
        int r;

        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry_signature)) > 0) {
                g_autofree char *key = NULL;
                JsonNode *value = NULL;

                r = read_key(m, entry_signature[0], &key);
                if (r < 0)
                        return r;
                r = read_json(m, &value);
                if (r < 0)
                        return r;
                json_object_set_member(object, key, value);

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        *ret = json_node_init_object(json_node_alloc(), object);
        return 0;
}

static int read_sequence(sd_bus_message *m, JsonNode **ret)
{
        g_autoptr(JsonArray) array = json_array_new();
        int r;

        while ((r = sd_bus_message_peek_type(m, NULL, NULL)) > 0) {
                JsonNode *element = NULL;

                r = read_json(m, &element);
                if (r < 0)
                        return r;
                json_array_add_element(array, element);
        }
        if (r < 0)
                return r;

        *ret = json_node_init_array(json_node_alloc(), array);
        return 0;
}

static int read_json(sd_bus_message *m, JsonNode **ret)
{
        g_autoptr(JsonNode) node = NULL;
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;

        if (!strchr(CONTAINER_TYPES, type))
                return read_basic(m, type, ret);

        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
                return r;

        if (type == SD_BUS_TYPE_VARIANT)
                r = read_json(m, &node);
        else if (type == SD_BUS_TYPE_ARRAY && contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN) {
                /* contents is "{ks...}": the entry's own signature is what lies between braces. */
                g_autofree char *entry = g_strndup(contents + 1, strlen(contents) - 2);
                r = read_dict(m, entry, &node);
        } else
                r = read_sequence(m, &node);
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        *ret = g_steal_pointer(&node);
        return 0;
}

static void print_json(JsonNode *node)
{
        g_autoptr(JsonGenerator) generator = json_generator_new();
        g_autofree char *text = NULL;

        json_generator_set_pretty(generator, TRUE);
        json_generator_set_indent(generator, 4);
        json_generator_set_root(generator, node);
        text = json_generator_to_data(generator, NULL);
        printf("%s\n", text);
}

static int print_message(sd_bus_message *m)
{
        g_autoptr(JsonNode) node = NULL;
        int r = read_json(m, &node);

        if (r >= 0)
                print_json(node);
        return r;
}

static void print_builders(GPtrArray *builders)
{
        g_autoptr(JsonBuilder) builder = json_builder_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_array(builder);
        for (guint i = 0; i < builders->len; i++) {
                KilnBuilderInfo *info = g_ptr_array_index(builders, i);

                json_builder_begin_object(builder);
                json_builder_set_member_name(builder, "id");
                json_builder_add_string_value(builder, info->id);
                json_builder_set_member_name(builder, "name");
                json_builder_add_string_value(builder, info->name);
                json_builder_set_member_name(builder, "owner");
                json_builder_add_int_value(builder, info->owner);
                json_builder_set_member_name(builder, "from");
                json_builder_add_string_value(builder, info->from);
                json_builder_set_member_name(builder, "path");
                json_builder_add_string_value(builder, info->path);
                json_builder_end_object(builder);
        }
        json_builder_end_array(builder);

        root = json_builder_get_root(builder);
        print_json(root);
}

static char **parse_string_array(const char *text)
{
        g_autoptr(JsonNode) root = NULL;
        g_auto(GStrv) argv = NULL;
        JsonArray *array;
        guint n;

        root = json_from_string(text, NULL);
        if (!root || !JSON_NODE_HOLDS_ARRAY(root))
                return NULL;

        array = json_node_get_array(root);
        n = json_array_get_length(array);
        argv = g_new0(char *, n + 1);
        for (guint i = 0; i < n; i++) {
                JsonNode *element = json_array_get_element(array, i);

                if (!JSON_NODE_HOLDS_VALUE(element) || json_node_get_value_type(element) != G_TYPE_STRING)
                        return NULL;
                argv[i] = json_node_dup_string(element);
        }
        return g_steal_pointer(&argv);
}

/* What kiln_cli_json() looks up. */
G_MODULE_EXPORT const KilnCliJson kiln_cli_json_module = {
        .print_message = print_message,
        .print_builders = print_builders,
        .parse_string_array = parse_string_array,
};
