/* SPDX-License-Identifier: Apache-2.0 */
/* Images on the bus: org.kiln.Builder1.Image objects, Builder.Commit, Manager.ListImages and GetImage
 * (registered as vtables of their own next to the Manager's and the Builder's), and the image store
 * they stand for (image/image-store.h). A caller sees the images it owns; uid 0 and manage-all see all,
 * as with builders. */
#pragma once

#include "image/image-store.h"
#include "objects/manager.h"

typedef struct KilnImages KilnImages;

/* Opens the store, exports every image on disk and registers the vtables. */
int kiln_images_register(KilnManager *manager);
void kiln_images_free(KilnImages *images);

/* By id, a unique id prefix (KILN_ID_MIN_PREFIX), or name ("NAME" means "NAME:latest"), among the
 * images the sender of @m may see (its own first). NotFound naming @name_or_id otherwise. */
KilnImage *kiln_images_find(KilnManager *manager, sd_bus_message *m, const char *name_or_id, GError **error);
/* An upper bound of the bytes the images the sender of @caller may see take in a GetManagedObjects reply. */
guint64 kiln_images_listing_bytes(KilnManager *manager, sd_bus_message *caller);
/* Bytes of the blobs of @owner's images (counted in StorageBytesPerUser). */
guint64 kiln_images_user_bytes(KilnManager *manager, uid_t owner);
