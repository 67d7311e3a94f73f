/*
 * Starts libFuzzer from a program that has its own main(). SwiftPM links an executable with
 * its main renamed to <module>_main (so tests can link the module), which leaves libFuzzer's
 * own main() unused; the fuzz targets therefore define @main and call fuzz_main.
 */
#ifndef FUZZ_DRIVER_H
#define FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int (*fuzz_test_one_input)(const uint8_t *data, size_t size);

/* Runs libFuzzer with the program's arguments; returns its exit status. */
int fuzz_main(int argc, char **argv, fuzz_test_one_input test_one_input);

#endif
