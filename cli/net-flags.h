/* SPDX-License-Identifier: Apache-2.0 */
/* The network flags of kiln run, kiln from and kiln config, as buildah spells them: --network
 * (NAME[:OPTION,…] for pasta and slirp4netns, a path for a namespace), --dns, --dns-search, --dns-option,
 * --add-host (each a list; commas separate values too) and --no-hosts. kilnd checks every value. */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

typedef struct {
        char *network;
        char **dns, **dns_search, **dns_option, **add_host;
        gboolean no_hosts;
} KilnNetFlags;

/* The flags' GOptionEntry rows for kiln from and kiln config (five lists and two values, in @f). */
#define KILN_NET_FLAG_ENTRIES(f)                                                                             \
        {"network",                                                                                          \
         0,                                                                                                  \
         0,                                                                                                  \
         G_OPTION_ARG_STRING,                                                                                \
         &(f)->network,                                                                                      \
         "Network of runs: private, none, host, pasta[:OPTS], slirp4netns[:OPTS] or a path",                 \
         "HOW"},                                                                                             \
                {"dns", 0, 0, G_OPTION_ARG_STRING_ARRAY, &(f)->dns, "Nameserver of runs (an IP, or none)",   \
                 "IP"},                                                                                      \
                {"dns-search", 0, 0, G_OPTION_ARG_STRING_ARRAY, &(f)->dns_search, "Search domain of runs",   \
                 "DOMAIN"},                                                                                  \
                {"dns-option", 0, 0, G_OPTION_ARG_STRING_ARRAY, &(f)->dns_option, "Resolver option of runs", \
                 "OPTION"},                                                                                  \
                {"add-host",                                                                                 \
                 0,                                                                                          \
                 0,                                                                                          \
                 G_OPTION_ARG_STRING_ARRAY,                                                                  \
                 &(f)->add_host,                                                                             \
                 "Add a line to the /etc/hosts of runs",                                                     \
                 "NAME:IP"},                                                                                 \
        {                                                                                                    \
                "no-hosts", 0, 0, G_OPTION_ARG_NONE, &(f)->no_hosts, "Do not generate /etc/hosts in runs",   \
                        NULL                                                                                 \
        }

void kiln_net_flags_clear(KilnNetFlags *flags);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnNetFlags, kiln_net_flags_clear)

gboolean kiln_net_flags_given(const KilnNetFlags *flags);

/* Appends the given flags as {sv} entries of an open a{sv}: network (and network_options, from
 * NAME:OPTS), dns, dns_search, dns_option, add_host, no_hosts. */
int kiln_net_flags_append(sd_bus_message *m, const KilnNetFlags *flags);
