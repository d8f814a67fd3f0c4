/*
 * spi_check.h — SPI calls whose failure is an internal error.
 *
 * The worker's own statements are fixed SQL over llmext's tables: a negative
 * SPI result means a bug or a broken installation, never bad user input, so
 * it is elog(ERROR) (XX000) with SPI's own words, not a silent skip.
 */
#ifndef LLMEXT_SPI_CHECK_H
#define LLMEXT_SPI_CHECK_H

#include "postgres.h"

#include "executor/spi.h"

/* Raises an internal error when rc (an SPI result) is a failure; rc otherwise. */
static inline int
llm_spi_check(int rc, const char *what)
{
	if (rc < 0)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
	return rc;
}

/* SPI_connect, checked. */
static inline void
llm_spi_connect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

#endif							/* LLMEXT_SPI_CHECK_H */
