module laysocks.test/apps

go 1.19
