message:>foo
