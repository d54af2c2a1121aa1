/* SPDX-License-Identifier: Apache-2.0 */
/* kiln config: Builder.Configure with the options given, and only those.
 *
 * Configure replaces whole values. For the list-valued settings (env, labels, volumes, caps,
 * ulimits) the client reads the current property, applies the flags to it as `buildah config`
 * would (config-merge.c) and sends the result. This read-modify-write is not atomic: two clients
 * configuring the same list at once may lose one's change. */
#include <stddef.h>

#include "bus-client.h"
#include "cli-util.h"
#include "config-merge.h"
#include "net-flags.h"
#include "verbs.h"

typedef struct {
        char **env;
        char **labels;
        char **volumes;
        char **cap_add;
        char **cap_drop;
        char **ulimits;
        char *working_dir;
        char *user;
        char *hostname;
        char *isolation;
        char *userns;
        char *entrypoint;
        char *cmd;
        char *shell;
        char **commands[KILN_COMMAND_N_KINDS]; /* entrypoint, cmd and shell, parsed */
        KilnNetFlags net;                      /* set as given, not merged (as buildah's from --dns) */
        char **group_add;                      /* run parity */
} ConfigOptions;

static void config_options_clear(ConfigOptions *o)
{
        g_strfreev(o->env);
        g_strfreev(o->labels);
        g_strfreev(o->volumes);
        g_strfreev(o->cap_add);
        g_strfreev(o->cap_drop);
        g_strfreev(o->ulimits);
        g_strfreev(o->group_add);
        g_free(o->working_dir);
        g_free(o->user);
        g_free(o->hostname);
        g_free(o->isolation);
        g_free(o->userns);
        g_free(o->entrypoint);
        g_free(o->cmd);
        g_free(o->shell);
        for (size_t i = 0; i < G_N_ELEMENTS(o->commands); i++)
                g_strfreev(o->commands[i]);
        kiln_net_flags_clear(&o->net);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ConfigOptions, config_options_clear)

#define OPTION_STRING(o, field) (*(char **)((char *)(o) + (field)))
#define OPTION_STRV(o, field) (*(char ***)((char *)(o) + (field)))

/* Sent as they are. */
static const struct {
        const char *key;
        size_t field;
} string_settings[] = {
        {"working_dir", offsetof(ConfigOptions, working_dir)},
        {"user", offsetof(ConfigOptions, user)},
        {"hostname", offsetof(ConfigOptions, hostname)},
        {"isolation", offsetof(ConfigOptions, isolation)},
        {"userns", offsetof(ConfigOptions, userns)},
};

/* Parsed into an argv (exec form, or buildah's shell-form rules); indexed by KilnCommandKind. */
static const struct {
        const char *key;
        const char *flag;
        size_t field;
} command_settings[KILN_COMMAND_N_KINDS] = {
        [KILN_COMMAND_ENTRYPOINT] = {"entrypoint", "--entrypoint", offsetof(ConfigOptions, entrypoint)},
        [KILN_COMMAND_CMD] = {"cmd", "--cmd", offsetof(ConfigOptions, cmd)},
        [KILN_COMMAND_SHELL] = {"shell", "--shell", offsetof(ConfigOptions, shell)},
};

/* Merged into the current value of an `as` property. */
static const struct {
        const char *key;
        const char *property;
        void (*apply)(GPtrArray *list, const char *arg);
        size_t field;
} list_settings[] = {
        {"volumes", "Volumes", kiln_list_apply, offsetof(ConfigOptions, volumes)},
        {"cap_add", "CapAdd", kiln_list_apply, offsetof(ConfigOptions, cap_add)},
        {"cap_drop", "CapDrop", kiln_list_apply, offsetof(ConfigOptions, cap_drop)},
        {"ulimits", "Ulimits", kiln_ulimits_apply, offsetof(ConfigOptions, ulimits)},
        {"group_add", "GroupAdd", kiln_list_apply, offsetof(ConfigOptions, group_add)}, /* run parity */
};

static bool config_options_empty(const ConfigOptions *o)
{
        if (o->env || o->labels || kiln_net_flags_given(&o->net))
                return false;
        for (size_t i = 0; i < G_N_ELEMENTS(string_settings); i++)
                if (OPTION_STRING(o, string_settings[i].field))
                        return false;
        for (size_t i = 0; i < G_N_ELEMENTS(command_settings); i++)
                if (OPTION_STRING(o, command_settings[i].field))
                        return false;
        for (size_t i = 0; i < G_N_ELEMENTS(list_settings); i++)
                if (OPTION_STRV(o, list_settings[i].field))
                        return false;
        return true;
}

static int append_env(sd_bus *bus, const char *path, char **args, sd_bus_message *m)
{
        g_auto(GStrv) current = NULL, merged = NULL;
        g_autoptr(GPtrArray) pairs = NULL;
        int r;

        r = kiln_bus_get_builder_strv(bus, path, "Env", &current);
        if (r < 0)
                return r;

        pairs = kiln_pairs_from_env(current);
        for (char **a = args; *a; a++)
                kiln_env_apply(pairs, *a);
        merged = kiln_pairs_to_env(pairs);

        r = kiln_bus_append_option_strv(m, "env", merged);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Configure");
        return 0;
}

static int read_labels(sd_bus *bus, const char *path, GPtrArray **ret)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) labels = kiln_pairs_new();
        const char *key, *value;
        int r;

        r = kiln_bus_get_builder_property(bus, path, "Labels", "a{ss}", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "{ss}");
        if (r < 0)
                return kiln_bus_log_parse_error(r);
        while ((r = sd_bus_message_read(reply, "{ss}", &key, &value)) > 0)
                kiln_pairs_set(labels, key, value);
        if (r < 0)
                return kiln_bus_log_parse_error(r);

        *ret = g_steal_pointer(&labels);
        return 0;
}

static int append_labels(sd_bus *bus, const char *path, char **args, sd_bus_message *m)
{
        g_autoptr(GPtrArray) labels = NULL;
        int r;

        r = read_labels(bus, path, &labels);
        if (r < 0)
                return r;
        for (char **a = args; *a; a++)
                kiln_labels_apply(labels, *a);

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "labels");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a{ss}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{ss}");
        for (guint i = 0; r >= 0 && i < labels->len; i++) {
                KilnPair *pair = g_ptr_array_index(labels, i);

                r = sd_bus_message_append(m, "{ss}", pair->key, pair->value);
        }
        for (int depth = 0; r >= 0 && depth < 3; depth++)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Configure");
        return 0;
}

static int append_list(sd_bus *bus, const char *path, size_t index, char **args, sd_bus_message *m)
{
        g_auto(GStrv) current = NULL, merged = NULL;
        g_autoptr(GPtrArray) list = NULL;
        int r;

        r = kiln_bus_get_builder_strv(bus, path, list_settings[index].property, &current);
        if (r < 0)
                return r;

        list = kiln_list_new(current);
        for (char **a = args; *a; a++)
                list_settings[index].apply(list, *a);
        merged = kiln_list_to_strv(list);

        r = kiln_bus_append_option_strv(m, list_settings[index].key, merged);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Configure");
        return 0;
}

/* Everything that can be checked without the service, before any call: the commands. */
static bool parse_commands(ConfigOptions *o)
{
        for (KilnCommandKind i = 0; i < KILN_COMMAND_N_KINDS; i++) {
                const char *arg = OPTION_STRING(o, command_settings[i].field);
                g_autoptr(GError) error = NULL;

                if (arg && !kiln_parse_command(i, arg, &o->commands[i], &error)) {
                        kiln_usage_error("config", "%s: %s", command_settings[i].flag, error->message);
                        return false;
                }
        }
        return true;
}

static int build_changes(sd_bus *bus, const char *path, const ConfigOptions *o, sd_bus_message *m)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(string_settings); i++) {
                const char *value = OPTION_STRING(o, string_settings[i].field);

                if (value)
                        r = kiln_bus_append_option_string(m, string_settings[i].key, value);
        }
        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(command_settings); i++)
                if (o->commands[i])
                        r = kiln_bus_append_option_strv(m, command_settings[i].key, o->commands[i]);
        if (r >= 0)
                r = kiln_net_flags_append(m, &o->net);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Configure");

        if (o->env) {
                r = append_env(bus, path, o->env, m);
                if (r < 0)
                        return r;
        }
        if (o->labels) {
                r = append_labels(bus, path, o->labels, m);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(list_settings); i++) {
                char **args = OPTION_STRV(o, list_settings[i].field);

                if (!args)
                        continue;
                r = append_list(bus, path, i, args, m);
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_close_container(m);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Configure");
        return 0;
}

int kiln_verb_config(int argc, char **argv)
{
        g_auto(ConfigOptions) o = {0};
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *path = NULL;
        int r;

        const GOptionEntry entries[] = {
                {"env", 'e', 0, G_OPTION_ARG_STRING_ARRAY, &o.env,
                 "Set (K=V) or remove (K-) an environment variable", "K=V"},
                {"workingdir", 0, 0, G_OPTION_ARG_STRING, &o.working_dir, "Working directory of runs",
                 "DIR"},
                {"user", 'u', 0, G_OPTION_ARG_STRING, &o.user, "User of runs", "USER[:GROUP]"},
                {"hostname", 0, 0, G_OPTION_ARG_STRING, &o.hostname, "Host name of runs", "NAME"},
                {"entrypoint", 0, 0, G_OPTION_ARG_STRING, &o.entrypoint,
                 "Entry point: a JSON array, or a string run with /bin/sh -c", "JSON|STRING"},
                {"cmd", 0, 0, G_OPTION_ARG_STRING, &o.cmd, "Default command: a JSON array, or words",
                 "JSON|STRING"},
                {"shell", 0, 0, G_OPTION_ARG_STRING, &o.shell, "Shell: a JSON array, or words",
                 "JSON|STRING"},
                {"volume", 'v', 0, G_OPTION_ARG_STRING_ARRAY, &o.volumes, "Add (V) or remove (V-) a volume",
                 "V"},
                {"label", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &o.labels, "Set (K=V) or remove (K-) a label",
                 "K=V"},
                {"cap-add", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.cap_add, "Add a capability to runs", "CAP"},
                {"cap-drop", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.cap_drop, "Drop a capability from runs",
                 "CAP"},
                {"ulimit", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.ulimits,
                 "Set (TYPE=SOFT[:HARD]) or remove (TYPE-) a limit", "TYPE=SOFT[:HARD]"},
                {"group-add", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.group_add,
                 "Add (G) or remove (G-) a supplementary group of runs", "GROUP"},
                {"isolation", 0, 0, G_OPTION_ARG_STRING, &o.isolation,
                 "How runs are isolated: oci or chroot", "ISOLATION"},
                {"userns", 0, 0, G_OPTION_ARG_STRING, &o.userns, "User namespace of runs: auto or host",
                 "USERNS"},
                KILN_NET_FLAG_ENTRIES(&o.net),
                {NULL},
        };

        if (!kiln_parse_options("config", "BUILDER", "Change a builder's configuration.", entries, &argc,
                                &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 2)
                return kiln_usage_error("config", "expected exactly one BUILDER");
        if (config_options_empty(&o))
                return kiln_usage_error("config", "nothing to change: give at least one option");
        if (!parse_commands(&o))
                return KILN_EXIT_FAILURE;

        r = kiln_bus_open_builder(argv[1], &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "Configure", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = build_changes(bus, path, &o, m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        return KILN_EXIT_SUCCESS;
}
