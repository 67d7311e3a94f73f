#ifndef WATCHWORD_CQRENCODE_SHIM_H
#define WATCHWORD_CQRENCODE_SHIM_H
#include <qrencode.h>
#endif
