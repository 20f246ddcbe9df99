/* heap.h - the dispatcher's allocator and how it gives memory back.
 *
 * The dispatcher runs on jemalloc (Debian's libjemalloc2) unless built with
 * a sanitizer (whose allocator must own malloc): every request makes and
 * frees a few dozen small blocks, across the loops, the Kafka threads and
 * the pool, and glibc's malloc spent a sixth of the dispatcher's CPU on
 * them (each turn's Redis output buffer, freed by hiredis after every
 * write, made it merge its fast bins again: malloc_consolidate). */
#ifndef SB_HEAP_H
#define SB_HEAP_H

/* Settings for the allocator, first thing in main. */
void heap_init(void);
/* Hands free memory back to the system, after a large answer left. */
void heap_give_back(void);

#endif
