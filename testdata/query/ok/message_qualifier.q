message:timeout message:"read tcp"
