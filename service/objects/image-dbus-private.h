/* SPDX-License-Identifier: Apache-2.0 */
/* What the Image objects (image-dbus.c) and Builder.Commit (image-commit-dbus.c) share: the registry of
 * images and the few steps both take on it. Private to those two files. */
#pragma once

#include "objects/image-dbus.h"

struct KilnImages {
        KilnImageStore *store;
        GHashTable *by_id; /* id → KilnImage (owned) */
        guint commits;     /* commits writing blobs: no blob is collected meanwhile */
        gboolean collect_pending;
        sd_bus_slot *slots[5];
};

typedef enum { IMAGE_ADDED, IMAGE_REMOVED, IMAGE_NAMES_CHANGED } ImageSignal;

/* Options a{sv} with boolean and string members only; unknown keys are refused by name. */
typedef struct {
        const char *key;
        char type; /* 'b', 's', 't' */
        void *value;
        gboolean *given; /* set when the key is there (may be NULL) */
} OptionSlot;

gboolean kiln_images_read_options(sd_bus_message *msg, const KilnConfig *limits, OptionSlot *slots,
                                  size_t n_slots, GError **error);
/* Removes the blobs no image names, unless a commit is writing some that no image names yet. */
void kiln_images_collect(KilnImages *images);
guint kiln_images_count_owned(KilnImages *images, uid_t owner);
gboolean kiln_image_has_name(const KilnImage *image, const char *name);
/* Gives @name to @to, taking it from the owner's image that had it. */
void kiln_images_take_name(KilnManager *m, KilnImage *to, const char *name);
/* Records @image (owned) and exports it. */
void kiln_images_add(KilnManager *m, KilnImage *image);
void kiln_images_emit(KilnManager *m, const KilnImage *image, ImageSignal kind);
int kiln_images_reply_error(sd_bus_message *msg, const GError *error);

/* Builder.Commit, registered on the Builder's path by kiln_images_register. */
extern const sd_bus_vtable kiln_builder_commit_vtable[];
