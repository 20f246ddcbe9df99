/* heap.c - see heap.h. */
#include "heap.h"

#ifdef SB_JEMALLOC
#include <jemalloc/jemalloc.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* Read by jemalloc when it starts. Blocks of 256 KiB and more (large
 * answers, a page of long messages) come from an arena that gives their
 * pages back as soon as they are freed, as glibc's mappings did; other
 * freed pages go back within about a second, by jemalloc's own thread even
 * while the dispatcher is idle. A burst of slow readers must not raise the
 * RSS for long (test_isolation). */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,"
                          "oversize_threshold:262144";

void heap_init(void)
{
}

void heap_give_back(void)
{
    (void)mallctl("arena." STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
}

#else
#include <malloc.h>

void heap_init(void)
{
    /* Large answers (a page of long messages) are their own mappings, so
     * their memory goes back to the system when they are sent: glibc's
     * moving threshold would otherwise grow to their size and keep them in
     * the heap, and the RSS a burst of slow readers raised would stay. */
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
}

void heap_give_back(void)
{
    malloc_trim(0);
}
#endif
