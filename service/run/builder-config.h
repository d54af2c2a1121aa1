/* SPDX-License-Identifier: Apache-2.0 */
/* A builder's configuration: what every run in it inherits. One table describes each field
 * once — its Configure / builder.json key, its D-Bus property, its type and its check — and
 * parsing, validation, persistence and the property getters all read that table. */
#pragma once

#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#include "bus/bus-args.h"

typedef struct KilnBuilderConfig {
        char **env;
        char *working_dir;
        char *user;
        char *hostname;
        char **entrypoint;
        char **cmd;
        char **shell;
        char **volumes;
        char **labels; /* "key=value", sorted by key; a{ss} on the bus, an object in JSON */
        char **cap_add;
        char **cap_drop;
        char **ulimits;
        char *isolation;
        char *userns;
        char **group_add;     /* run parity: supplementary groups of every run (passwd.h) */
        char *stop_signal;    /* from an image's config */
        char **exposed_ports; /* "PORT/PROTO", from an image's config */
        /* Network settings (network.h): what a run that names none gets */
        char *network;
        char **network_options;
        char **dns, **dns_search, **dns_option;
        char **add_host;
        char *no_hosts; /* a boolean: "true", "false" or NULL (unset) */
} KilnBuilderConfig;

typedef enum {
        KILN_FIELD_STRING, /* s */
        KILN_FIELD_STRV,   /* as */
        KILN_FIELD_MAP,    /* a{ss} */
        KILN_FIELD_BOOL,   /* b; kept as a string, "true" or "false", NULL when never set */
} KilnFieldType;

typedef struct KilnConfigField {
        const char *key;      /* Configure option and builder.json member */
        const char *property; /* D-Bus property of org.kiln.Builder1.Builder */
        KilnFieldType type;
        size_t offset; /* in KilnBuilderConfig */
        /* Checks one string (or one array element, or one map key) and returns what is stored. */
        char *(*check)(const char *arg, const char *value, GError **error);
} KilnConfigField;

extern const KilnConfigField kiln_config_fields[];
extern const size_t kiln_config_n_fields;
const KilnConfigField *kiln_config_field_lookup(const char *key);

/* A set of fields changed by one call: bit i stands for kiln_config_fields[i]. */
typedef guint32 KilnFieldMask;

void kiln_builder_config_clear(KilnBuilderConfig *config);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnBuilderConfig, kiln_builder_config_clear)
/* Copies the fields in @mask from @src to @dst, replacing what @dst had. */
void kiln_builder_config_assign(KilnBuilderConfig *dst, const KilnBuilderConfig *src, KilnFieldMask mask);

/* Reads the variant at the current position of @m as the value of @field into @config; checks the
 * variant's type, the limits and the field's rule. On failure nothing in @config changes. */
gboolean kiln_builder_config_read_variant(KilnBuilderConfig *config, const KilnConfigField *field,
                                          sd_bus_message *m, const KilnConfig *limits, GError **error);

void kiln_builder_config_to_json(const KilnBuilderConfig *config, JsonBuilder *builder);
gboolean kiln_builder_config_from_json(KilnBuilderConfig *config, JsonObject *object, GError **error);

/* Whether @field holds one string (KILN_FIELD_STRING and KILN_FIELD_BOOL) rather than a list. */
gboolean kiln_config_field_is_scalar(const KilnConfigField *field);

/* "s", "as", "a{ss}" or "b" */
const char *kiln_config_field_signature(const KilnConfigField *field);

/* Appends the D-Bus value of @field to @reply. */
int kiln_builder_config_append_property(const KilnBuilderConfig *config, const KilnConfigField *field,
                                        sd_bus_message *reply);
