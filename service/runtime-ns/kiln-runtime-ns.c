/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-runtime-ns: runs a container runtime in an intermediate mount namespace, for runs in a user
 * namespace.
 *
 *   kiln-runtime-ns COVER KEEP... -- RUNTIME [ARG...]
 *
 * The runtime sets up the container's mounts as the mapped root, which gets no capability over the
 * host's root-only directories: the bundle, the root file system's mount point and the runtime's
 * state live under kilnd's 0700 runtime directory (COVER). Here, in a mount namespace of its own, a
 * fresh tmpfs covers COVER and only the KEEP directories (each under COVER) are put back at the same
 * paths, reachable through 0755 directories that no one outside this namespace can see. Paths in
 * config.json stay valid, and nothing on the host is loosened. Propagation from the host is kept
 * (slave), so kilnd's unmounts still reach in; nothing propagates out. The namespace is made by
 * runtime-ns.c, which kiln-isolate's server shares (its children do this without this program). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime-ns.h"

static void die(const char *what, const char *path)
{
        fprintf(stderr, "kiln-runtime-ns: %s %s: %s\n", what, path ? path : "", strerror(errno));
        exit(125);
}

int main(int argc, char **argv)
{
        const char *what, *path;
        int i = 2;

        if (argc < 4 || argv[1][0] != '/') {
                fprintf(stderr, "usage: kiln-runtime-ns COVER KEEP... -- RUNTIME [ARG...]\n");
                return 125;
        }
        for (; i < argc && strcmp(argv[i], "--") != 0; i++)
                ;
        if (i + 1 >= argc)
                die("no runtime to run after", "--");
        /* Only the verbs that make a container set up mounts; the others (start, kill, delete, state)
         * touch nothing but the runtime's state and go straight through. */
        if (kiln_runtime_ns_makes_container((const char *const *)argv + i + 1) &&
            kiln_runtime_ns_enter(argv[1], (const char *const *)argv + 2, i - 2, &what, &path) < 0)
                die(what, path);
        execv(argv[i + 1], argv + i + 1);
        die("exec", argv[i + 1]);
}
