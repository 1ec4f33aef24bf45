pod:z..a
