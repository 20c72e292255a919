#include "evl/cli.h"

int main(int argc, char** argv) { return evl::RunCli(argc, argv); }
