/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "bus-client.h"
#include "net-flags.h"

void kiln_net_flags_clear(KilnNetFlags *f)
{
        g_clear_pointer(&f->network, g_free);
        g_clear_pointer(&f->dns, g_strfreev);
        g_clear_pointer(&f->dns_search, g_strfreev);
        g_clear_pointer(&f->dns_option, g_strfreev);
        g_clear_pointer(&f->add_host, g_strfreev);
        f->no_hosts = FALSE;
}

gboolean kiln_net_flags_given(const KilnNetFlags *f)
{
        return f->network || f->dns || f->dns_search || f->dns_option || f->add_host || f->no_hosts;
}

/* buildah's lists take "a,b" as two values. */
static char **split_all(char **values)
{
        g_autoptr(GStrvBuilder) out = g_strv_builder_new();

        for (char **v = values; v && *v; v++) {
                g_auto(GStrv) parts = g_strsplit(*v, ",", -1);
                for (char **p = parts; *p; p++)
                        if (**p)
                                g_strv_builder_add(out, *p);
        }
        return g_strv_builder_end(out);
}

int kiln_net_flags_append(sd_bus_message *m, const KilnNetFlags *f)
{
        const struct {
                const char *key;
                char **values;
        } lists[] = {
                {"dns", f->dns},
                {"dns_search", f->dns_search},
                {"dns_option", f->dns_option},
                {"add_host", f->add_host},
        };
        int r = 0;

        if (f->network) {
                const char *colon = strchr(f->network, ':');
                g_autofree char *name = NULL;

                /* A path names a namespace (ns:PATH to kilnd); buildah's "container" is the private one;
                 * pasta:OPTS and slirp4netns:OPTS carry the helper's options. */
                if (f->network[0] == '/')
                        name = g_strconcat("ns:", f->network, NULL);
                else if (g_str_equal(f->network, "container"))
                        name = g_strdup("private");
                else if (colon && (g_str_has_prefix(f->network, "pasta:") ||
                                   g_str_has_prefix(f->network, "slirp4netns:")))
                        name = g_strndup(f->network, (gsize)(colon - f->network));
                else
                        name = g_strdup(f->network);
                r = kiln_bus_append_option_string(m, "network", name);
                if (r >= 0 && colon && !g_str_has_prefix(name, "ns:") && strcmp(name, f->network) != 0) {
                        char *opts[] = {(char *)colon + 1, NULL};
                        g_auto(GStrv) options = split_all(opts);
                        r = kiln_bus_append_option_strv(m, "network_options", options);
                }
        }
        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(lists); i++)
                if (lists[i].values) {
                        /* add_host entries hold ':' and never ',': split like the others. */
                        g_auto(GStrv) values = split_all(lists[i].values);
                        r = kiln_bus_append_option_strv(m, lists[i].key, values);
                }
        if (r >= 0 && f->no_hosts)
                r = sd_bus_message_append(m, "{sv}", "no_hosts", "b", 1);
        return r;
}
