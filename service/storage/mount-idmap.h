/* SPDX-License-Identifier: Apache-2.0 */
/* ID-mapped mounts: a layer shown through a user namespace's mapping, so files owned by 0 on disk
 * appear owned by the mapped root on the host and by 0 inside the namespace, without copying or
 * chowning anything. */
#pragma once

#include <glib.h>

#include "spec/spec.h"

/* A user namespace with these maps and no process left in it, as a descriptor (for
 * MOUNT_ATTR_IDMAP). The maps are checked by the caller; the kernel checks them again. */
int kiln_userns_fd_new(const KilnIdMapping *uid_map, gsize n_uid, const KilnIdMapping *gid_map, gsize n_gid,
                       GError **error);

/* A detached copy of the directory tree at @dir_fd, ID-mapped through @userns_fd. */
int kiln_idmapped_tree(int dir_fd, int userns_fd, const char *what, GError **error);
