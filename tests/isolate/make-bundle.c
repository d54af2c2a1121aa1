/* SPDX-License-Identifier: Apache-2.0 */
/* make-bundle: writes a bundle (config.json and the generated files) for a root file system with the
 * project's spec generator and kilnd's defaults, for the benchmark (tests/bench/bench-isolate.py) and
 * for trying kiln-isolate by hand:
 *
 *   make-bundle [--seccomp PROFILE] [--userns] [--no-new-privileges] ROOTFS BUNDLE -- COMMAND [ARG...]
 */
#include <sys/capability.h>
#include <sys/stat.h>

#include <glib.h>

#include "spec/seccomp-profile.h"
#include "spec/spec.h"

static void write_file(const char *dir, const char *name, const char *text)
{
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_autoptr(GError) error = NULL;

        if (!g_file_set_contents(path, text, -1, &error))
                g_error("%s", error->message);
}

int main(int argc, char **argv)
{
        static const KilnIdMapping map[] = {{0, 100000, 65536}};
        static const guint32 gids[] = {0};
        g_autofree char *profile = NULL;
        gboolean userns = FALSE, nnp = FALSE;
        GOptionEntry entries[] = {
                {"seccomp", 0, 0, G_OPTION_ARG_FILENAME, &profile, "seccomp profile (kilnd's format)",
                 "PROFILE"},
                {"userns", 0, 0, G_OPTION_ARG_NONE, &userns, "container 0..65535 = host 100000..", NULL},
                {"no-new-privileges", 0, 0, G_OPTION_ARG_NONE, &nnp, "process.noNewPrivileges", NULL},
                {NULL},
        };
        g_autoptr(GOptionContext) context = g_option_context_new("ROOTFS BUNDLE -- COMMAND [ARG...]");
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) seccomp = NULL, spec = NULL;
        g_autofree char *hosts = NULL, *resolv = NULL, *hostname = NULL, *containerenv = NULL, *text = NULL;
        KilnSpecInput in = {0};

        g_option_context_add_main_entries(context, entries, NULL);
        if (!g_option_context_parse(context, &argc, &argv, &error) || argc < 4) {
                g_printerr("%s\n", error ? error->message : "usage: make-bundle ROOTFS BUNDLE -- COMMAND");
                return 2;
        }
        if (g_mkdir_with_parents(argv[2], 0755) < 0)
                g_error("mkdir %s: %s", argv[2], g_strerror(errno));
        hosts = g_build_filename(argv[2], "hosts", NULL);
        resolv = g_build_filename(argv[2], "resolv.conf", NULL);
        hostname = g_build_filename(argv[2], "hostname", NULL);
        containerenv = g_build_filename(argv[2], "containerenv", NULL);
        write_file(argv[2], "hosts", "127.0.0.1 localhost\n");
        write_file(argv[2], "resolv.conf", "nameserver 127.0.0.1\n");
        write_file(argv[2], "hostname", "bench\n");
        write_file(argv[2], "containerenv", "");

        in = (KilnSpecInput){
                .id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .rootfs = argv[1],
                .argv = (const char *const *)&argv[g_str_equal(argv[3], "--") ? 4 : 3],
                .cwd = "/",
                .additional_gids = gids,
                .n_additional_gids = 1,
                .home = "/root",
                .no_new_privileges = nnp,
                .files = {.hosts = hosts,
                          .resolv_conf = resolv,
                          .hostname = hostname,
                          .containerenv = containerenv},
                .last_cap = (int)cap_max_bits() - 1,
        };
        if (userns) {
                in.uid_mappings = in.gid_mappings = map;
                in.n_uid_mappings = in.n_gid_mappings = 1;
        }
        if (profile) {
                g_auto(GStrv) caps = kiln_spec_capabilities(&in, &error);
                if (caps)
                        seccomp =
                                kiln_seccomp_profile_load(NULL, profile, (const char *const *)caps, &error);
                if (!seccomp)
                        g_error("%s", error->message);
                in.seccomp = seccomp;
        }
        spec = kiln_spec_generate(&in, &error);
        if (!spec)
                g_error("%s", error->message);
        text = kiln_spec_to_data(spec, TRUE, NULL);
        write_file(argv[2], "config.json", text);
        return 0;
}
